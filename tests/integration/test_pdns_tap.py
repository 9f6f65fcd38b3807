"""The resolver as a passive DNS sensor: upstream answers become tuples, clients are not kept."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mamori.store.pdns_schema import connect_functions
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _query(conf: Path, *args: str) -> list[dict[str, object]]:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "pdns", "query", "--config", str(conf), "-j", *args],
        capture_output=True,
        text=True,
    )
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_upstream_answers_are_recorded_without_clients(
    tmp_path: Path, upstream: AuthServer
) -> None:
    extra = '[pdns]\nenabled = true\nflush_interval = 0.2\nsensor = "fw1"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()
    try:
        for _ in range(3):  # the 2nd and 3rd are cache hits: one observation each
            assert m.query("www.example.test", "A").answer
        assert m.query("alias.example.test", "A").answer
        assert m.query("mail.example.test", "MX").answer
        assert m.query("nope.example.test", "A").rcode() == 3
    finally:
        assert m.stop() == 0, m.stderr()
    www = _query(m.config, "-r", "www.example.test/A")
    # once from the www query, once in the alias query's CNAME chain; cache hits add nothing
    assert sorted((r["rdata"], r["count"]) for r in www) == [
        (["192.0.2.1"], 2), (["192.0.2.2"], 2),
    ]  # fmt: skip
    cname = _query(m.config, "-n", "www.example.test/CNAME")
    assert [(r["rrname"], r["rrtype"]) for r in cname] == [("alias.example.test.", "CNAME")]
    mx = _query(m.config, "-n", "mx1.example.test")
    assert [r["rdata"] for r in mx] == [["10 mx1.example.test."]]
    assert _query(m.config, "-i", "192.0.2.0/24", "-t", "A")  # by address
    db = sqlite3.connect(tmp_path / "pdns.sqlite")
    connect_functions(db)  # the rrset view shows stored addresses as text
    try:
        assert db.execute("SELECT rrname, count FROM nxdomain").fetchall() == [
            ("nope.example.test.", 1)
        ]
        assert db.execute("SELECT sensor, observations FROM sensors").fetchone()[0] == "fw1"
        columns = {
            c[1]
            for t in ("rr", "rrset", "nxdomain", "names", "sensors")
            for c in db.execute(f"PRAGMA table_info({t})")
        }
        assert not {c for c in columns if "client" in c or "addr" in c}
        dump = "\n".join(db.iterdump())
        assert "127.0.0.1" not in dump.replace("ns1.example.test.", "")  # no client address
    finally:
        db.close()


def test_upstream_answers_reach_clickhouse(
    tmp_path: Path, upstream: AuthServer, clickhouse_url: str
) -> None:
    """The same sensor with ``[pdns] url``: the tap writes to Debian's ClickHouse server and
    ``mamori pdns query`` reads it back; no column holds a client."""
    from mamori.config.load import load
    from mamori.store.pdns_open import open_pdns

    extra = (
        f'[pdns]\nenabled = true\nflush_interval = 0.2\nsensor = "fw1"\nurl = "{clickhouse_url}"\n'
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()
    try:
        for _ in range(3):
            assert m.query("www.example.test", "A").answer
        assert m.query("nope.example.test", "A").rcode() == 3
    finally:
        assert m.stop() == 0, m.stderr()
    www = _query(m.config, "-r", "www.example.test/A")
    assert sorted((r["rdata"], r["count"]) for r in www) == [
        (["192.0.2.1"], 1), (["192.0.2.2"], 1),
    ]  # fmt: skip
    store = open_pdns(load(m.config, resolver=False), readonly=True)
    try:
        assert [n[:2] + n[4:] for n in store.nxdomain("nope.example.test")] == [
            ("nope.example.test.", 1, 1)
        ]
        assert [s[0] for s in store.sensors()] == ["fw1"]
        db = clickhouse_url.rsplit("/", 1)[1]
        cols = store.conn.query(f"SELECT name FROM system.columns WHERE database = '{db}'")  # type: ignore[attr-defined]
        assert cols and not [c for (c,) in cols if "client" in c or "addr" in c]
    finally:
        store.close()
    assert (tmp_path / "pdns-spool" / "tap-answers").exists()  # the tap's crash note
    assert not list((tmp_path / "pdns-spool").glob("*.batch"))  # nothing left waiting
