"""`mamori pdns ...` with [pdns] url when ClickHouse does not answer: one clear line and
exit 2, never a traceback; a capture whose past the spool does not know is not read."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori.cli import cli
from tests.support.net import free_port

PCAP = Path(__file__).resolve().parents[3] / "shared/data/pcap"


def _conf(tmp_path: Path, name: str, url: str) -> Path:
    """A config whose spool (pdns-spool/ beside [store] path) is shared by every *name*."""
    c = tmp_path / f"{name}.toml"
    c.write_text(f'[store]\npath = "{tmp_path}/m.db"\n[pdns]\nurl = "{url}"\n')
    return c


def _away(tmp_path: Path) -> Path:
    c = _conf(tmp_path, "away", f"clickhouse://127.0.0.1:{free_port()}/db")
    c.write_text(c.read_text() + '[[brand]]\nname = "Mizuho"\ndomains = ["mizuho.co.jp"]\n')
    return c


def _run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r.output


def _kept(tmp_path: Path) -> list[Path]:
    """The batches kept in the spool, waiting for ClickHouse."""
    from mamori.store.pdns_spool import Spool

    return list(Spool(tmp_path / "pdns-spool", 1 << 30).files())


def test_reingest_while_clickhouse_is_away_refuses_and_counts_nothing_twice(
    tmp_path: Path, clickhouse_server: object, clickhouse_url: str
) -> None:
    up = _conf(tmp_path, "up", clickhouse_url)
    cap = PCAP / "gopassivedns__mx.pcap"
    _run("pdns", "ingest", "--config", str(up), str(cap))
    before = _run("pdns", "export", "--config", str(up))
    assert before.count("\n") >= 2
    # the same node, ClickHouse away: the spool knows nothing of this capture
    out = _run("pdns", "ingest", "--config", str(_away(tmp_path)), str(cap), code=2)
    assert f"cannot tell whether {cap} was already ingested: ClickHouse clickhouse://" in out
    assert "try again when the server is back" in out and "Traceback" not in out
    assert _kept(tmp_path) == []  # nothing read, nothing kept to be sent twice later
    # back: skipped as ingested, counts unchanged
    assert "1 capture(s) already ingested" in _run("pdns", "ingest", "--config", str(up), str(cap))
    assert _run("pdns", "export", "--config", str(up)) == before


def test_a_capture_the_spool_knows_is_answered_from_it_while_clickhouse_is_away(
    tmp_path: Path,
) -> None:
    """Kept batches carry the capture's position: re-running skips it, offline too."""
    from mamori.config.clickhouse import parse_clickhouse_url
    from mamori.store.ch_conn import ChUnavailable, DriverConn
    from mamori.store.pdns_base import FileProgress
    from mamori.store.pdns_clickhouse import PdnsClickHouse
    from mamori.store.pdns_spool import Spool

    url = parse_clickhouse_url(f"clickhouse://127.0.0.1:{free_port()}/db")
    store = PdnsClickHouse(DriverConn(url, timeout=2.0), Spool(tmp_path / "spool", 1 << 20))
    try:
        with pytest.raises(ChUnavailable):
            store.ingested("f1")
        store.write({("a.example.", 1, "192.0.2.1", ""): [1, 2, 1]},
                    progress=FileProgress("f1", "/x.pcap", 10, 5, True))  # fmt: skip
        assert store.ingested("f1") == (5, True)
        with pytest.raises(ChUnavailable):
            store.ingested("f2")
    finally:
        store.close()  # tries to send what is kept: still away, so it stays


@pytest.mark.parametrize(
    "args",
    [
        ("pdns", "query", "-r", "example.com"),
        ("pdns", "query", "-i", "192.0.2.0/24"),
        ("pdns", "search", "mizuho"),
        ("pdns", "stats"),
        ("pdns", "export"),
        ("pdns", "import", "REC"),
        ("brand", "report"),
        ("nod", "list"),
    ],
)
def test_lookups_name_the_server_and_the_cause_when_clickhouse_is_away(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    rec = tmp_path / "one.json"
    rec.write_text('{"rrname":"a.example.","rrtype":"A","rdata":"192.0.2.1",'
                   '"time_first":1,"time_last":2,"count":1}\n')  # fmt: skip
    argv = [str(rec) if a == "REC" else a for a in args]
    out = _run(*argv, "--config", str(_away(tmp_path)), code=2)
    last = out.strip().splitlines()[-1]
    assert last.startswith("mamori: error: ClickHouse clickhouse://default@127.0.0.1:"), out
    assert "cannot connect: connection refused" in last and "Traceback" not in out
    assert _kept(tmp_path) == []
