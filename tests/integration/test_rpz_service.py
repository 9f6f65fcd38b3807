"""RPZ end to end through `mamori serve`: actions, precedence, hit log, reload."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest

from tests.integration.test_resolver_service import ZONE, addresses
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess

pytestmark = pytest.mark.integration

POLICY = """$TTL 60
@ SOA ns.rpz.local. hostmaster.rpz.local. 7 3600 600 86400 30
@ NS ns.rpz.local.
bad.example.test        CNAME .
*.bad.example.test      CNAME .
nodata.example.test     CNAME *.
drop.example.test       CNAME rpz-drop.
tcp.example.test        CNAME rpz-tcp-only.
www.example.test        CNAME rpz-passthru.
local.example.test      A 192.0.2.200
garden.example.test     CNAME *.walled.example.
32.2.0.0.127.rpz-client-ip CNAME .
32.25.2.0.192.rpz-ip    CNAME .
follow.example.test     CNAME www.example.test.
hop.example.test        CNAME local.example.test.
tobad.example.test      CNAME bad.example.test.
"""

BAD_LINE = len(POLICY.splitlines()) + 1  # a record appended to POLICY is on this line


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _start(tmp_path: Path, auth: AuthServer, policy: str = POLICY, **kw: object) -> MamoriProcess:
    zone_file = tmp_path / "local.rpz"
    zone_file.write_text(policy)
    extra = f'[[rpz]]\nname = "rpz.local"\nfile = "{zone_file}"\n'
    return MamoriProcess(
        tmp_path, [f"127.0.0.1:{auth.port}"], extra=extra, allow=["127.0.0.0/8"], **kw
    )


@pytest.fixture
def mamori(tmp_path: Path, auth: AuthServer) -> Iterator[MamoriProcess]:
    m = _start(tmp_path, auth).start()
    yield m
    assert m.stop() == 0, m.stderr()


def _ede(r: dns.message.Message) -> list[int]:
    return [o.code for o in r.options if o.otype == dns.edns.EDE]


def test_nxdomain_with_policy_soa_and_ede(mamori: MamoriProcess, auth: AuthServer) -> None:
    for name in ("bad.example.test", "deep.sub.bad.example.test"):
        r = mamori.query(name, use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert r.authority[0].name.to_text() == "rpz.local."
        assert r.authority[0].rdtype == dns.rdatatype.SOA and r.authority[0].ttl <= 30
        assert _ede(r) == [15]  # Blocked
    assert not auth.log, "a QNAME-blocked name never reaches the upstream"


def test_nodata_local_data_and_walled_garden(mamori: MamoriProcess) -> None:
    nodata = mamori.query("nodata.example.test")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    local = mamori.query("local.example.test")
    assert addresses(local) == {"192.0.2.200"}
    other_type = mamori.query("local.example.test", "AAAA")
    assert other_type.rcode() == dns.rcode.NOERROR and not other_type.answer
    garden = mamori.query("garden.example.test")
    assert garden.answer[0].rdtype == dns.rdatatype.CNAME
    assert garden.answer[0][0].target.to_text() == "garden.example.test.walled.example."
    assert garden.rcode() == dns.rcode.SERVFAIL  # the garden is unreachable in this test


def test_drop_tcp_only_and_passthru(mamori: MamoriProcess, auth: AuthServer) -> None:
    with pytest.raises(dns.exception.Timeout):
        mamori.query("drop.example.test", timeout=1)
    udp = mamori.query("tcp.example.test")
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = mamori.query("tcp.example.test", tcp=True)
    assert tcp.rcode() == dns.rcode.NXDOMAIN  # answered normally over TCP (upstream says so)
    assert addresses(mamori.query("www.example.test")) == {"192.0.2.1", "192.0.2.2"}


def test_client_ip_trigger(mamori: MamoriProcess) -> None:
    r = mamori.query("www.example.test", source="127.0.0.2")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert mamori.query("www.example.test").rcode() == dns.rcode.NOERROR


def test_hits_are_logged_in_sqlite_and_bind_format(mamori: MamoriProcess) -> None:
    mamori.query("x.bad.example.test")
    mamori.query("local.example.test")
    mamori.query("www.example.test")
    assert mamori.stop() == 0
    rows = (
        sqlite3.connect(mamori.db)
        .execute(
            "SELECT qname, rcode, policy_zone, policy_rule, policy_trigger, policy_action"
            " FROM query_log ORDER BY id"
        )
        .fetchall()
    )
    assert rows[0] == (
        "x.bad.example.test.",
        3,
        "rpz.local.",
        "*.bad.example.test.rpz.local",
        "QNAME",
        "NXDOMAIN",
    )
    assert rows[1][5] == "Local-Data"
    assert rows[2][2:] == ("rpz.local.", "www.example.test.rpz.local", "QNAME", "PASSTHRU")
    assert (
        "rpz QNAME NXDOMAIN rewrite x.bad.example.test/A/IN via *.bad.example.test.rpz.local"
        in mamori.stderr()
    )
    assert "policy hits since start: rpz.local. 3" in mamori.stderr()
    out = subprocess.run(
        [sys.executable, "-m", "mamori", "zones", "hits", "--config", str(mamori.config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counters = {tuple(line.split()[:4]) for line in out.splitlines()[1:]}
    assert counters == {
        ("rpz.local.", "QNAME", "NXDOMAIN", "1"),
        ("rpz.local.", "QNAME", "Local-Data", "1"),
        ("rpz.local.", "QNAME", "PASSTHRU", "1"),
    }


def test_sighup_reloads_zone_and_broken_zone_keeps_previous(mamori: MamoriProcess) -> None:
    zone_file = mamori.tmp / "local.rpz"
    assert mamori.query("new.example.test").rcode() == dns.rcode.NXDOMAIN  # upstream NXDOMAIN
    zone_file.write_text(POLICY + "new.example.test A 192.0.2.123\n")
    mamori.signal(signal.SIGHUP)
    _wait_for(mamori, "policy zone rpz.local. serial", 2)
    assert addresses(mamori.query("new.example.test")) == {"192.0.2.123"}
    zone_file.write_text(POLICY + "broken.example.test A 999.0.0.1\n")
    mamori.signal(signal.SIGHUP)
    _wait_for(mamori, "previous version serving", 1)
    assert addresses(mamori.query("new.example.test")) == {"192.0.2.123"}
    assert f"local.rpz:{BAD_LINE}" in mamori.stderr()


def test_broken_zone_at_startup_fails_with_file_and_line(tmp_path: Path, auth: AuthServer) -> None:
    m = _start(tmp_path, auth, POLICY + "oops.example.test A 1.2.3\n")
    m.start(wait=False)
    assert m.proc is not None and m.proc.wait(10) != 0
    m.stop()
    assert f"{tmp_path / 'local.rpz'}:{BAD_LINE}" in m.stderr()


def _wait_for(m: MamoriProcess, text: str, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while m.stderr().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert m.stderr().count(text) >= count, m.stderr()


def test_deleted_zone_file_on_reload_keeps_previous_version(mamori: MamoriProcess) -> None:
    (mamori.tmp / "local.rpz").unlink()
    mamori.signal(signal.SIGHUP)
    _wait_for(mamori, "previous version serving", 1)
    assert "cannot read" in mamori.stderr()
    assert mamori.query("bad.example.test").rcode() == dns.rcode.NXDOMAIN


def test_response_ip_on_upstream_and_cached_answers(
    mamori: MamoriProcess, auth: AuthServer
) -> None:
    # mx1.example.test A 192.0.2.25 at the upstream; 32.25.2.0.192.rpz-ip CNAME .
    for _ in range(2):  # first from the upstream, then from the cache
        r = mamori.query("mx1.example.test", use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        assert _ede(r) == [15]
    assert ("udp", "mx1.example.test.", 1) in auth.log, "Response-IP needs the answer first"
    mx = mamori.query("mail.example.test", "MX")  # an MX answer carries no address: untouched
    assert mx.rcode() == dns.rcode.NOERROR and mx.answer
    assert mamori.stop() == 0
    rows = (
        sqlite3.connect(mamori.db)
        .execute(
            "SELECT policy_trigger, policy_rule, policy_action FROM query_log"
            " WHERE qname = 'mx1.example.test.'"
        )
        .fetchall()
    )
    assert rows == [("IP", "32.25.2.0.192.rpz-ip.rpz.local", "NXDOMAIN")] * 2


def test_policy_cname_is_followed_and_rechecked(mamori: MamoriProcess) -> None:
    r = mamori.query("follow.example.test", use_edns=0)  # target resolved upstream
    assert r.answer[0].rdtype == dns.rdatatype.CNAME
    assert addresses(r) == {"192.0.2.1", "192.0.2.2"}
    assert _ede(r) == [15]
    hop = mamori.query("hop.example.test")  # target rewritten by Local-Data
    assert [a.rdtype for a in hop.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert addresses(hop) == {"192.0.2.200"}
    blocked = mamori.query("tobad.example.test")  # target blocked: NXDOMAIN after the CNAME
    assert blocked.rcode() == dns.rcode.NXDOMAIN
    assert blocked.answer[0][0].target.to_text() == "bad.example.test."
    cname_only = mamori.query("follow.example.test", "CNAME")  # asked for the CNAME itself
    assert [a.rdtype for a in cname_only.answer] == [dns.rdatatype.CNAME]


def test_zone_file_change_is_picked_up_without_sighup(tmp_path: Path, auth: AuthServer) -> None:
    zone_file = tmp_path / "local.rpz"
    zone_file.write_text(POLICY)
    extra = f'[policy]\nwatch_interval = 0.2\n[[rpz]]\nname = "rpz.local"\nfile = "{zone_file}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], extra=extra).start()
    try:
        assert m.query("new.example.test").rcode() == dns.rcode.NXDOMAIN  # upstream NXDOMAIN
        zone_file.write_text(POLICY + "new.example.test A 192.0.2.123\n")
        _wait_for(m, "policy zone file changed", 1)
        _wait_for(m, "policy zone rpz.local. serial", 2)
        assert addresses(m.query("new.example.test")) == {"192.0.2.123"}
        # A broken edit is refused; the previous version keeps serving.
        zone_file.write_text(POLICY + "broken.example.test A 999.0.0.1\n")
        _wait_for(m, "previous version serving", 1)
        assert addresses(m.query("new.example.test")) == {"192.0.2.123"}
    finally:
        assert m.stop() == 0, m.stderr()


def test_refreshed_answer_is_checked_again(tmp_path: Path, auth: AuthServer) -> None:
    # short.example.test has TTL 2: cached clean, then the upstream data changes
    # to a listed address; the refreshed answer is blocked. (No Client-IP rule
    # in this zone, so "no rule" is memoised on the cached entry.)
    head = "\n".join(POLICY.splitlines()[:3])
    m = _start(tmp_path, auth, head + "\n32.25.2.0.192.rpz-ip CNAME .\n").start()
    try:
        assert addresses(m.query("short.example.test")) == {"192.0.2.9"}
        assert addresses(m.query("short.example.test")) == {"192.0.2.9"}  # from the cache
        rds = auth.zone.find_rdataset("short.example.test.", "A")
        rds.clear()
        rds.add(dns.rdata.from_text("IN", "A", "192.0.2.25"), 2)
        time.sleep(2.5)
        assert m.query("short.example.test").rcode() == dns.rcode.NXDOMAIN
    finally:
        assert m.stop() == 0, m.stderr()


def test_policy_swapped_during_resolution_decides_the_answer(
    tmp_path: Path, auth: AuthServer
) -> None:
    # A query is in flight (slow upstream) when a reload adds a rule for its name:
    # the answer, and the decision remembered with the cached entry, follow the
    # new policy.
    zone_file = tmp_path / "local.rpz"
    head = "\n".join(POLICY.splitlines()[:3]) + "\n"
    zone_file.write_text(head)
    extra = f'[policy]\nwatch_interval = 0.1\n[[rpz]]\nname = "rpz.local"\nfile = "{zone_file}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], extra=extra, upstream_timeout=3).start()
    try:
        auth.delay = 1.5
        result: list[dns.message.Message] = []
        t = threading.Thread(target=lambda: result.append(m.query("mx1.example.test", timeout=5)))
        t.start()
        time.sleep(0.2)
        zone_file.write_text(head + "mx1.example.test CNAME .\n")
        _wait_for(m, "policy zone rpz.local. serial", 2)
        t.join(10)
        auth.delay = 0.0
        assert result and result[0].rcode() == dns.rcode.NXDOMAIN
        assert m.query("mx1.example.test").rcode() == dns.rcode.NXDOMAIN  # from the cache
    finally:
        assert m.stop() == 0, m.stderr()
