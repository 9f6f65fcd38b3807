"""A batch Debian's real ClickHouse (18.16) refuses is never retried forever: it is not
kept as if the server were away, a kept one is moved to ``rejected/`` and the batches
behind it go on; ``import_records`` and ``mamori pdns import`` report it as a failure,
and batches only kept because they could not be sent are said to be kept, not imported."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori.cli import cli
from mamori.config.clickhouse import parse_clickhouse_url
from mamori.errors import StoreError
from mamori.store.ch_conn import ChUnavailable, DriverConn
from mamori.store.pdns_base import Record
from mamori.store.pdns_clickhouse import PdnsClickHouse
from mamori.store.pdns_spool import Spool
from tests.support.net import free_port

T = 1_700_000_000
GOOD = {("good.example.", 1, "192.0.2.1", ""): [T, T + 1, 1]}
BEHIND = {("behind.example.", 1, "192.0.2.2", ""): [T, T + 2, 2]}
TOO_BIG = {("big.example.", 1, "192.0.2.3", ""): [T, T, 2**64]}  # no UInt64 holds it


def _store(url: str, spool: Path | None) -> PdnsClickHouse:
    conn = DriverConn(parse_clickhouse_url(url), timeout=5.0)
    return PdnsClickHouse(conn, None if spool is None else Spool(spool, 1 << 20))


def _away_url() -> str:
    return f"clickhouse://127.0.0.1:{free_port()}/db"


def _names(store: PdnsClickHouse) -> list[tuple[str, int]]:
    return sorted((r.rrname, r.count) for r in store.export_records())


def _keep_while_away(spool: Path, *batches: dict[tuple[str, int, str, str], list[int]]) -> None:
    """*batches* kept in *spool* by a writer whose ClickHouse does not answer."""
    away = _store(_away_url(), spool)
    try:
        for b in batches:
            away.write(b)
    finally:
        away.close()
    assert len(Spool(spool, 1 << 20)) == len(batches)


def test_a_value_that_does_not_fit_is_refused_not_taken_for_the_server_away(
    clickhouse_url: str,
) -> None:
    store = _store(clickhouse_url, None)
    try:
        with pytest.raises(StoreError) as e:
            store.write(TOO_BIG)
        assert not isinstance(e.value, ChUnavailable)
        assert "a value does not fit its column" in str(e.value) and "(code 53)" in str(e.value)
        store.write(GOOD)  # the connection is fine for the next batch
        assert _names(store) == [("good.example.", 1)]
    finally:
        store.close()


def test_a_refused_kept_batch_is_set_aside_once_and_the_batches_behind_it_go_on(
    clickhouse_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "pdns-spool"
    _keep_while_away(spool, GOOD, TOO_BIG, BEHIND)
    store = _store(clickhouse_url, spool)
    try:
        with caplog.at_level(logging.ERROR, "mamori.store.pdns_clickhouse"):
            assert store.drain(force=True) == 0
            store.write({("later.example.", 1, "192.0.2.4", ""): [T, T, 1]})
            assert store.drain(force=True) == 0
        assert _names(store) == [("behind.example.", 2), ("good.example.", 1),
                                 ("later.example.", 1)]  # fmt: skip
        assert store.spool is not None and store.spool.rejected == 1
        (aside,) = (spool / "rejected").iterdir()
        assert store.spool.read(aside)["tuples"] == [["big.example.", 1, "192.0.2.3", "", T, T,
                                                      2**64]]  # fmt: skip
        refusals = [
            r.getMessage() for r in caplog.records if "refuses kept batch" in r.getMessage()
        ]
        assert len(refusals) == 1 and "a value does not fit its column" in refusals[0]
        assert "the batches behind it go on" in refusals[0]
    finally:
        store.close()


@pytest.mark.parametrize("waiting", [False, True], ids=["spool empty", "batches waiting"])
def test_import_records_fails_on_a_refused_batch_and_keeps_nothing_of_it(
    clickhouse_url: str, tmp_path: Path, waiting: bool
) -> None:
    spool = tmp_path / "pdns-spool"
    if waiting:  # the import's batches go behind these, then the spool is sent
        _keep_while_away(spool, BEHIND)
    store = _store(clickhouse_url, spool)
    records = [Record("good.example.", 1, "192.0.2.1", "", T, T + 1, 1),
               Record("big.example.", 1, "192.0.2.3", "", T, T, 2**64),
               Record("after.example.", 1, "192.0.2.5", "", T, T, 1)]  # fmt: skip
    if waiting:  # the refused batch first, so that it is kept behind BEHIND, then sent
        records = records[1:]
    try:
        with pytest.raises(StoreError) as e:
            store.import_records(records, batch=1)
        assert not isinstance(e.value, ChUnavailable)
        msg = str(e.value)
        assert msg.startswith(
            "a batch of 1 records is not imported (nothing of it): ClickHouse refused"
        )
        assert "a value does not fit its column" in msg
        assert store.spool is not None and len(store.spool) == 0  # nothing retried later
        assert len(list((spool / "rejected").glob("*.batch"))) == (1 if waiting else 0)
        # what came before it is imported; the import stops there
        assert _names(store) == [("behind.example.", 2) if waiting else ("good.example.", 1)]
    finally:
        store.close()


def test_pdns_import_says_kept_not_imported_when_its_batches_wait_in_the_spool(
    clickhouse_url: str, tmp_path: Path
) -> None:
    """Another process (mamori serve) holds the spool and has batches waiting: the
    import's batches go behind them; the command says they are kept, not imported."""
    spool = tmp_path / "pdns-spool"
    _keep_while_away(spool, BEHIND)
    conf = tmp_path / "m.toml"
    conf.write_text(f'[store]\npath = "{tmp_path}/m.db"\n[pdns]\nurl = "{clickhouse_url}"\n')
    rec = tmp_path / "rec.json"
    rec.write_text('{"rrname":"good.example.","rrtype":"A","rdata":"192.0.2.1",'
                   f'"time_first":{T},"time_last":{T + 1},"count":1}}\n')  # fmt: skip
    with Spool(spool, 1 << 20).sending() as mine:  # as the sending process would
        assert mine
        r = CliRunner().invoke(cli, ["pdns", "import", "--config", str(conf), str(rec)])
    assert r.exit_code == 0, r.output
    assert "imported" not in r.output
    assert f"read 1 records from {rec}: 1 tuples kept in the spool {spool}" in r.output
    assert "ClickHouse away" in r.output
    store = _store(clickhouse_url, spool)  # the sender's turn: everything arrives once
    try:
        assert store.drain(force=True) == 0
        assert _names(store) == [("behind.example.", 2), ("good.example.", 1)]
    finally:
        store.close()
