"""Feed impact preview against the real `mamori serve`: the feed runs in preview mode
(``enforce = "preview"``: logged as "would block", never applied), `mamori feeds
preview` counts what it would block, then the feed is enforced and the same queries
are sent again over real UDP: the query log's blocks equal the preview's numbers."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until

pytestmark = pytest.mark.integration

ZONE = """
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 60
@        IN NS ns1
ns1      IN A 127.0.0.1
www      IN A 192.0.2.1
news     IN A 192.0.2.2
bad1     IN A 192.0.2.66
bad1     IN AAAA 2001:db8::66
go       IN CNAME bad1
x.ads    IN A 192.0.2.70
y.ads    IN A 192.0.2.71
ok.ads   IN A 192.0.2.72
ok2.ads  IN A 192.0.2.73
probe.ads IN A 192.0.2.74
already  IN A 192.0.2.80
"""
# the candidate: a subtree, a name, an exception of its own (adblock)
FEED = (
    "||ads.example.test^\n||bad1.example.test^\n@@||ok.ads.example.test^\n||already.example.test^\n"
)
# in force before the feeds: blocks "already", allows "ok2.ads" (an allowlist)
LOCAL = """$TTL 300
@ SOA localhost. root.localhost. 1 3600 600 86400 60
@ NS localhost.
already.example.test CNAME .
ok2.ads.example.test CNAME rpz-passthru.
"""
ZONE_NAME = "cand.feeds.mamori."
# (source address, name, type): who asks what, as the replay sends it twice
QUERIES = [
    ("127.0.0.1", "www.example.test", "A"),
    ("127.0.0.1", "x.ads.example.test", "A"),
    ("127.0.0.1", "x.ads.example.test", "A"),
    ("127.0.0.2", "x.ads.example.test", "A"),
    ("127.0.0.3", "x.ads.example.test", "AAAA"),
    ("127.0.0.2", "y.ads.example.test", "A"),
    ("127.0.0.3", "bad1.example.test", "AAAA"),
    ("127.0.0.3", "go.example.test", "A"),  # blocked through its CNAME target
    ("127.0.0.2", "ok.ads.example.test", "A"),  # the feed's own exception
    ("127.0.0.1", "ok2.ads.example.test", "A"),  # allowed by the local zone first
    ("127.0.0.1", "already.example.test", "A"),  # blocked by the local zone first
    ("127.0.0.3", "news.example.test", "A"),
]


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _mamori(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mamori", *args], capture_output=True, text=True, timeout=120
    )


def _rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _send(m: MamoriProcess) -> dict[str, int]:
    out = {}
    for source, name, rdtype in QUERIES:
        out[name] = m.query(name, rdtype, source=source).rcode()
    return out


def test_preview_counts_equal_what_enforcing_blocks(tmp_path: Path, upstream: AuthServer) -> None:
    feed = tmp_path / "cand.txt"
    feed.write_text(FEED)
    local = tmp_path / "local.rpz"
    local.write_text(LOCAL)
    feed_table = f'[[feed]]\nname = "cand"\npath = "{feed}"\nformat = "adblock"\n'
    extra = f'[[rpz]]\nname = "local.rpz."\nfile = "{local}"\n' + feed_table
    m = MamoriProcess(
        tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra + 'enforce = "preview"\n',
        allow=["127.0.0.0/8", "::1"],
    )  # fmt: skip
    assert _mamori("feeds", "update", "--config", str(m.config)).returncode == 0
    m.start()
    try:
        # Preview mode: evaluated and logged as "would block", never applied.
        first = _send(m)
        assert first["x.ads.example.test"] == dns.rcode.NOERROR
        assert first["go.example.test"] == dns.rcode.NOERROR
        assert first["already.example.test"] == dns.rcode.NXDOMAIN  # the local zone
        assert until(lambda: _rows(m.db, "SELECT count(*) FROM query_log")[0][0] == len(QUERIES))
        would = _rows(m.db, "SELECT qname, policy_action, outcome FROM query_log"
                      " WHERE policy_zone = ?", ZONE_NAME)  # fmt: skip
        assert ("x.ads.example.test.", "disabled", "resolved") in would
        assert all(action == "disabled" and outcome != "blocked" for _n, action, outcome in would)
        cut = time.time()

        preview = _mamori("feeds", "preview", "--config", str(m.config), "cand", "--json",
                          "--top", "100")  # fmt: skip
        assert preview.returncode == 0, preview.stderr
        report = json.loads(preview.stdout)
        assert report["zone"] == ZONE_NAME
        assert report["earlier_zones"] == ["rules.mamori.", "local.rpz."]  # local rules first
        assert report["already_blocked_by"] == {"local.rpz.": 1}
        assert report["allowed_earlier"] == 1
        warned = {w["name"]: w["reasons"] for w in report["warnings"]}
        assert warned.get("x.ads.example.test.") == ["popular"]  # every client asked

        # Enforce it, and send the same queries again.
        m.config.write_text(m.config.read_text().replace('enforce = "preview"', "enforce = true"))
        m.signal(signal.SIGHUP)
        assert until(lambda: m.query("probe.ads.example.test").rcode() == dns.rcode.NXDOMAIN)
        time.sleep(0.01)
        start = time.time()
        assert start > cut
        second = _send(m)
        assert second["x.ads.example.test"] == dns.rcode.NXDOMAIN
        assert second["go.example.test"] == dns.rcode.NXDOMAIN
        where = (
            " FROM query_log WHERE ts >= ? AND policy_zone = ?"
            " AND outcome IN ('blocked', 'dropped')"
        )
        assert until(
            lambda: (
                _rows(m.db, "SELECT count(*) FROM query_log WHERE ts >= ?", start)[0][0]
                == len(QUERIES)
            )
        )
        blocked = _rows(m.db, "SELECT count(*), count(DISTINCT qname), count(DISTINCT client)"
                        + where, start, ZONE_NAME)[0]  # fmt: skip
        names = dict(_rows(m.db, "SELECT qname, count(*)" + where + " GROUP BY qname",
                           start, ZONE_NAME))  # fmt: skip
    finally:
        assert m.stop() == 0, m.stderr()
    got = report["blocked"]
    assert (got["queries"], got["names"], got["clients"]) == blocked == (7, 4, 3)
    assert {t["name"]: t["queries"] for t in report["top_names"]} == names
