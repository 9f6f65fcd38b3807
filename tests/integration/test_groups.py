"""Client groups through `mamori serve`: zones, feeds for some clients only, with one and
two workers; the query log's group column; SIGHUP moving a client (per-group retention:
tests/store/test_group_retention.py).

Clients are told apart by their source address on the loopback (127.0.0.1 ... 127.0.0.4):
127.0.0.2 is in "kids", 127.0.0.3 in "guests", 127.0.0.4 in both, 127.0.0.1 in none.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.feedserver import FeedServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until

pytestmark = pytest.mark.integration

NX, OK = dns.rcode.NXDOMAIN, dns.rcode.NOERROR
NONE, KIDS, GUESTS, BOTH = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
QUERIES = 12  # per check: from as many source ports (spread over the workers)


def _rpz(name: str, body: str) -> str:
    return f"$TTL 60\n@ SOA ns.{name}. h.{name}. 1 3600 600 86400 30\n@ NS ns.{name}.\n{body}"


GROUPS = """
[[group]]
name = "kids"
clients = [{kids}]
[[group]]
name = "guests"
clients = ["127.0.0.3/32", "127.0.0.4/32"]
query_log_days = {guest_days}
"""


def _config(tmp: Path, feeds: FeedServer, kids: str = '"127.0.0.2/32", "127.0.0.4/32"') -> str:
    for name, body in (
        ("all.rpz", "mx1.example.test CNAME .\n"),
        # QNAME, a CNAME target (alias -> www: the slow path), a Response-IP (tcponly)
        ("kids.rpz", "www.example.test CNAME .\n32.77.2.0.192.rpz-ip CNAME .\n"),
        ("guests.rpz", "mail.example.test CNAME .\n"),
    ):
        (tmp / name).write_text(_rpz(name, body))
    return (
        GROUPS.format(kids=kids, guest_days=0)
        + f"""
[[rpz]]
name = "all.rpz"
file = "{tmp / "all.rpz"}"
[[rpz]]
name = "kids.rpz"
file = "{tmp / "kids.rpz"}"
groups = ["kids"]
[[rpz]]
name = "guests.rpz"
file = "{tmp / "guests.rpz"}"
groups = ["guests"]
[[feed]]
name = "games"
url = "http://127.0.0.1:{feeds.port}/games.txt"
format = "domains"
category = "custom"
refresh = 3600
groups = ["kids"]
"""
    )


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


@pytest.fixture
def feeds(tmp_path: Path) -> Iterator[FeedServer]:
    www = tmp_path / "www"
    www.mkdir()
    (www / "games.txt").write_text("short.example.test\n")
    srv = FeedServer(www)
    yield srv
    srv.close()


def _mamori(tmp: Path, auth: AuthServer, feeds: FeedServer, workers: int) -> MamoriProcess:
    m = MamoriProcess(
        tmp,
        [f"127.0.0.1:{auth.port}"],
        extra=_config(tmp, feeds),
        allow=["127.0.0.0/8"],
        workers=workers,
    )
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "feeds", "update", "--config", str(m.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return m


def _rcodes(m: MamoriProcess, name: str, source: str, rdtype: str = "A") -> set[int]:
    return {m.query(name, rdtype, source=source).rcode() for _ in range(QUERIES)}


EXPECT = {
    # name: the clients it is blocked for
    "mx1.example.test": {NONE, KIDS, GUESTS, BOTH},  # a zone without groups: everyone
    "www.example.test": {KIDS, BOTH},  # kids.rpz (QNAME)
    "alias.example.test": {KIDS, BOTH},  # kids.rpz on the CNAME target www
    "tcponly.example.test": {KIDS, BOTH},  # kids.rpz (Response-IP 192.0.2.77)
    "short.example.test": {KIDS, BOTH},  # the feed with groups = ["kids"]
    "mail.example.test": {GUESTS, BOTH},  # guests.rpz
}


def _check_all(m: MamoriProcess) -> None:
    # Twice over, each client in turn: answers cached for one client (and the policy's
    # memos on them) are never taken for another whose groups differ.
    for _ in range(2):
        for name, blocked in EXPECT.items():
            for client in (NONE, KIDS, GUESTS, BOTH):
                want = {NX} if client in blocked else {OK}
                assert _rcodes(m, name, client) == want, (name, client, m.stderr()[-3000:])


@pytest.mark.parametrize("workers", [1, 2])
def test_zones_and_feeds_apply_to_their_groups_only(
    tmp_path: Path, auth: AuthServer, feeds: FeedServer, workers: int
) -> None:
    m = _mamori(tmp_path, auth, feeds, workers).start()
    try:
        _check_all(m)

        # the query log shows each client's groups
        def groups() -> dict[str, set[str]]:
            with sqlite3.connect(m.db) as db:
                rows = db.execute("SELECT client, client_group FROM query_log").fetchall()
            out: dict[str, set[str]] = {}
            for client, group in rows:
                out.setdefault(client, set()).add(group)
            return out

        want = {NONE: {""}, KIDS: {"kids"}, GUESTS: {"guests"}, BOTH: {"kids,guests"}}
        assert until(lambda: groups() == want, 5), groups()
        with sqlite3.connect(m.db) as db:
            (n,) = db.execute(
                "SELECT count(*) FROM query_log WHERE qname = 'www.example.test.'"
                " AND client = ? AND client_group = 'kids' AND policy_zone = 'kids.rpz.'",
                (KIDS,),
            ).fetchone()
        assert n >= QUERIES

        # SIGHUP: 127.0.0.1 joins "kids", 127.0.0.2 leaves it
        m.config.write_text(
            m.config.read_text().replace(
                '"127.0.0.2/32", "127.0.0.4/32"', '"127.0.0.1/32", "127.0.0.4/32"'
            )
        )
        m.signal(signal.SIGHUP)
        assert until(lambda: _rcodes(m, "www.example.test", NONE) == {NX}, 5), m.stderr()
        assert _rcodes(m, "www.example.test", KIDS) == {OK}
        assert _rcodes(m, "short.example.test", NONE) == {NX}
        assert _rcodes(m, "short.example.test", KIDS) == {OK}
        assert _rcodes(m, "www.example.test", BOTH) == {NX}
    finally:
        assert m.stop() == 0, m.stderr()[-3000:]


def test_no_groups_nothing_changes(tmp_path: Path, auth: AuthServer, feeds: FeedServer) -> None:
    """Zones without groups apply to every client; the query log's group is empty."""
    (tmp_path / "all.rpz").write_text(_rpz("all.rpz", "www.example.test CNAME .\n"))
    extra = f'[[rpz]]\nname = "all.rpz"\nfile = "{tmp_path / "all.rpz"}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], extra=extra, allow=["127.0.0.0/8"])
    m.start()
    try:
        for client in (NONE, KIDS):
            assert _rcodes(m, "www.example.test", client) == {NX}
            assert _rcodes(m, "mx1.example.test", client) == {OK}

        def labels() -> set[str]:
            with sqlite3.connect(m.db) as db:
                return {g for (g,) in db.execute("SELECT DISTINCT client_group FROM query_log")}

        assert until(lambda: labels() == {""}, 5)
    finally:
        assert m.stop() == 0, m.stderr()[-3000:]
