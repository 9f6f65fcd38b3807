"""End-to-end behaviour of `mamori serve` against a real authoritative fixture on 127.0.0.1."""

from __future__ import annotations

import signal
import socket
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess

pytestmark = pytest.mark.integration

BIG_TXT = " ".join(f'"{"x" * 200}"' for _ in range(4))  # ~800 bytes of TXT
ZONE = f"""
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 60
@        IN NS ns1
ns1      IN A 127.0.0.1
www      IN A 192.0.2.1
www      IN A 192.0.2.2
alias    IN CNAME www
short 2  IN A 192.0.2.9
big      IN TXT {BIG_TXT}
tcponly  IN A 192.0.2.77
mail     IN MX 10 mx1
mx1      IN A 192.0.2.25
"""


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


@pytest.fixture
def mamori(tmp_path: Path, auth: AuthServer) -> Iterator[MamoriProcess]:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"]).start()
    yield m
    assert m.stop() == 0, m.stderr()


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in msg.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


def test_answers_over_udp_tcp_ipv4_and_ipv6(mamori: MamoriProcess) -> None:
    for tcp in (False, True):
        for host in ("127.0.0.1", "::1"):
            r = mamori.query("www.example.test", tcp=tcp, host=host)
            assert r.rcode() == dns.rcode.NOERROR
            assert addresses(r) == {"192.0.2.1", "192.0.2.2"}
            assert r.flags & dns.flags.QR and r.flags & dns.flags.RA


def test_cname_chain_and_mx_are_forwarded(mamori: MamoriProcess) -> None:
    r = mamori.query("alias.example.test")
    assert r.answer[0].rdtype == dns.rdatatype.CNAME
    assert addresses(r) == {"192.0.2.1", "192.0.2.2"}
    mx = mamori.query("mail.example.test", "MX")
    assert mx.answer[0][0].exchange.to_text() == "mx1.example.test."


def test_second_query_is_a_cache_hit_and_ttl_decreases(
    mamori: MamoriProcess, auth: AuthServer
) -> None:
    first = mamori.query("www.example.test")
    asked = auth.queries["udp"]
    time.sleep(2.1)
    second = mamori.query("WWW.EXAMPLE.test")  # case-insensitive key
    assert auth.queries["udp"] == asked, "served from cache, upstream not asked again"
    assert second.answer[0].ttl <= first.answer[0].ttl - 2
    assert second.question[0].name.to_text() == "WWW.EXAMPLE.test."  # question echoed as asked


def test_nxdomain_and_nodata_are_cached_with_soa_minimum(
    mamori: MamoriProcess, auth: AuthServer
) -> None:
    nx = mamori.query("nothing.example.test")
    nodata = mamori.query("www.example.test", "AAAA")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    for r in (nx, nodata):
        soa = r.authority[0]
        assert soa.rdtype == dns.rdatatype.SOA
        assert soa.ttl <= 60  # RFC 2308: min(SOA TTL, SOA MINIMUM)
    asked = len(auth.log)
    again_nx = mamori.query("nothing.example.test")
    again_nodata = mamori.query("www.example.test", "AAAA")
    assert len(auth.log) == asked
    assert again_nx.rcode() == dns.rcode.NXDOMAIN
    assert again_nodata.rcode() == dns.rcode.NOERROR and not again_nodata.answer


def test_upstream_truncation_falls_back_to_tcp(mamori: MamoriProcess, auth: AuthServer) -> None:
    auth.tc_names.add("tcponly.example.test.")
    r = mamori.query("tcponly.example.test")
    assert addresses(r) == {"192.0.2.77"}
    assert ("tcp", "tcponly.example.test.", 1) in auth.log


def test_answer_truncated_to_client_buffer(mamori: MamoriProcess) -> None:
    # No EDNS: 512 bytes; the ~800-byte TXT answer must come back with TC=1.
    r = mamori.query("big.example.test", "TXT", use_edns=False)
    assert r.flags & dns.flags.TC and not r.answer
    # EDNS 4096 from the client is capped by max_udp_size (1232): fits, no TC.
    r = mamori.query("big.example.test", "TXT", use_edns=0, payload=4096)
    assert not r.flags & dns.flags.TC and r.answer
    assert r.edns == 0 and r.payload == 1232
    # Over TCP the whole answer arrives.
    r = mamori.query("big.example.test", "TXT", tcp=True, use_edns=False)
    assert r.answer and not r.flags & dns.flags.TC


def test_do_bit_is_passed_upstream_and_keyed_separately(
    mamori: MamoriProcess, auth: AuthServer
) -> None:
    plain = mamori.query("www.example.test", use_edns=0)
    asked = len(auth.log)
    with_do = mamori.query("www.example.test", use_edns=0, want_dnssec=True)
    assert len(auth.log) == asked + 1, "DO=1 is a different cache entry"
    assert with_do.ednsflags & dns.flags.DO
    assert not plain.ednsflags & dns.flags.DO


def test_edns_version_1_gets_badvers(mamori: MamoriProcess) -> None:
    r = mamori.query("www.example.test", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS


def test_serve_stale_when_upstream_stops(mamori: MamoriProcess, auth: AuthServer) -> None:
    fresh = mamori.query("short.example.test", use_edns=0)
    assert addresses(fresh) == {"192.0.2.9"}
    time.sleep(2.5)  # TTL 2 expired
    auth.mode = "drop"
    stale = mamori.query("short.example.test", use_edns=0, timeout=5)
    assert addresses(stale) == {"192.0.2.9"}
    assert stale.answer[0].ttl == 30  # RFC 8767 stale answer TTL
    edes = [o for o in stale.options if o.otype == dns.edns.EDE]
    assert edes and edes[0].code == 3  # Stale Answer
    # Uncached names fail cleanly with SERVFAIL.
    assert mamori.query("www.example.test", timeout=5).rcode() == dns.rcode.SERVFAIL


def test_failover_to_second_upstream(tmp_path: Path, auth: AuthServer) -> None:
    with AuthServer(ZONE, "example.test.") as dead:
        dead.mode = "drop"
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{dead.port}", f"127.0.0.1:{auth.port}"]).start()
        try:
            for i in range(5):
                r = m.query(f"n{i}.example.test", timeout=5)
                assert r.rcode() == dns.rcode.NXDOMAIN
            assert len(auth.log) == 5
            # After repeated timeouts the dead upstream is preferred no longer.
            dead_before = len(dead.log)
            for i in range(5, 10):
                m.query(f"n{i}.example.test", timeout=5)
            assert len(dead.log) - dead_before < 5
        finally:
            assert m.stop() == 0


def test_servfail_from_first_upstream_fails_over(tmp_path: Path, auth: AuthServer) -> None:
    with AuthServer(ZONE, "example.test.") as bad:
        bad.mode = "servfail"
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{bad.port}", f"127.0.0.1:{auth.port}"]).start()
        try:
            assert addresses(m.query("www.example.test")) == {"192.0.2.1", "192.0.2.2"}
        finally:
            assert m.stop() == 0


def test_client_outside_allow_is_refused(mamori: MamoriProcess, auth: AuthServer) -> None:
    r = mamori.query("www.example.test", source="127.0.0.2", use_edns=0)
    assert r.rcode() == dns.rcode.REFUSED
    assert not r.answer
    assert [o.code for o in r.options if o.otype == dns.edns.EDE] == [18]  # Prohibited
    assert mamori.query("www.example.test", tcp=True, source="127.0.0.2").rcode() == (
        dns.rcode.REFUSED
    )
    assert not auth.log, "a refused client never causes upstream traffic"


def test_rate_limit_engages(tmp_path: Path, auth: AuthServer) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], rate_limit=5, rate_burst=5).start()
    try:
        codes = [m.query("www.example.test").rcode() for _ in range(30)]
        assert codes[:5] == [dns.rcode.NOERROR] * 5
        assert codes.count(dns.rcode.REFUSED) >= 20
        # TCP is not rate limited (no amplification over a handshake).
        assert m.query("www.example.test", tcp=True).rcode() == dns.rcode.NOERROR
    finally:
        assert m.stop() == 0


def test_garbage_packets_do_not_stop_service(mamori: MamoriProcess) -> None:
    garbage = [
        b"",
        b"\x00",
        b"\xff" * 11,
        b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00" + b"\x03www\x00\x00\x01\x00\x01" * 2,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fabc",
        b"\x12\x34\x81\x80" + b"\x00" * 8,  # a response, not a query: dropped
        b"\x00" * 5000,
        bytes(range(256)) * 3,
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        for g in garbage:
            s.sendto(g, ("127.0.0.1", mamori.port))
        replies = []
        for _ in garbage:
            try:
                replies.append(s.recv(4096))
            except TimeoutError:
                break
    for rep in replies:
        assert rep[2] & 0x80, "every reply is a response"
        assert rep[3] & 0x0F in (dns.rcode.FORMERR, dns.rcode.NOTIMP)
    # TCP: a bad message on a connection, then a good one on the same connection.
    with socket.create_connection(("127.0.0.1", mamori.port), timeout=3) as c:
        bad = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x7f"
        good = dns.message.make_query("www.example.test", "A").to_wire()
        c.sendall(struct.pack("!H", len(bad)) + bad + struct.pack("!H", len(good)) + good)
        got = []
        for _ in range(2):
            ln = struct.unpack("!H", c.recv(2, socket.MSG_WAITALL))[0]
            got.append(dns.message.from_wire(c.recv(ln, socket.MSG_WAITALL)))
    assert sorted(m.rcode() for m in got) == [dns.rcode.NOERROR, dns.rcode.FORMERR]
    assert addresses(mamori.query("www.example.test")) == {"192.0.2.1", "192.0.2.2"}


def test_notify_opcode_gets_notimp(mamori: MamoriProcess) -> None:
    q = dns.message.make_query("www.example.test", "SOA")
    q.set_opcode(dns.opcode.UPDATE)
    r = dns.query.udp(q, "127.0.0.1", port=mamori.port, timeout=3)
    assert r.rcode() == dns.rcode.NOTIMP


def test_query_log_rows_in_sqlite(mamori: MamoriProcess) -> None:
    mamori.query("www.example.test")
    mamori.query("www.example.test", tcp=True)
    mamori.query("nothing.example.test")
    mamori.query("www.example.test", source="127.0.0.2")
    assert mamori.stop() == 0
    db = sqlite3.connect(mamori.db)
    rows = db.execute(
        "SELECT client, qname, qtype, rcode, answer, upstream, cache_hit, transport"
        " FROM query_log ORDER BY id"
    ).fetchall()
    assert rows[0][:4] == ("127.0.0.1", "www.example.test.", 1, 0)
    assert sorted(rows[0][4].split(";")) == ["A 192.0.2.1", "A 192.0.2.2"]
    assert rows[0][5].startswith("127.0.0.1:") and rows[0][6] == 0
    assert rows[1][6] == 1 and rows[1][7] == "tcp"
    assert rows[2][3] == dns.rcode.NXDOMAIN
    assert rows[3][0] == "127.0.0.2" and rows[3][3] == dns.rcode.REFUSED


def test_sighup_reloads_allow_list(mamori: MamoriProcess) -> None:
    assert mamori.query("www.example.test", source="127.0.0.2").rcode() == dns.rcode.REFUSED
    text = mamori.config.read_text().replace('"127.0.0.1/32"', '"127.0.0.0/8"')
    mamori.config.write_text(text)
    mamori.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "configuration reloaded" not in mamori.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mamori.query("www.example.test", source="127.0.0.2").rcode() == dns.rcode.NOERROR


def test_broken_config_on_sighup_keeps_running_config(mamori: MamoriProcess) -> None:
    mamori.config.write_text(mamori.config.read_text() + "\n[server]\nbogus = 1\n")
    mamori.signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reload refused" not in mamori.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload refused" in mamori.stderr()
    assert mamori.query("www.example.test").rcode() == dns.rcode.NOERROR


def test_port_in_use_fails_fast_with_clear_message(tmp_path: Path, auth: AuthServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"])
        blocker.bind(("127.0.0.1", m.port))
        m.start(wait=False)
        assert m.proc is not None
        assert m.proc.wait(10) != 0
        m.stop()
        assert f"cannot listen on 127.0.0.1:{m.port}/udp: address already in use" in m.stderr()


def test_sigterm_drains_and_exits_zero(tmp_path: Path, auth: AuthServer) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"]).start()
    m.query("www.example.test")
    assert m.stop() == 0
    assert "stopping: draining" in m.stderr()


def test_reuseport_workers_share_the_port(tmp_path: Path, auth: AuthServer) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], workers=2).start()
    try:
        for i in range(20):
            assert m.query("www.example.test", tcp=bool(i % 2)).rcode() == dns.rcode.NOERROR
    finally:
        assert m.stop() == 0
    rows = sqlite3.connect(m.db).execute("SELECT COUNT(*) FROM query_log").fetchone()[0]
    assert rows == 20, "events of every worker reach the single writer"
