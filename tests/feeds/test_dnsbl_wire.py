"""The DNSBL responder's wire fast path answers exactly what the dnspython path answers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from mamori.config.feeds import DnsblConfig
from mamori.feeds.publish.dnsbl import Responder


def _responder(tmp_path: Path, kind: str) -> Responder:
    ips = tmp_path / "ips.entries"
    ips.write_text(
        "# feed spam-ips category spam\nip\t198.51.100.7\n"
        "cidr\t203.0.113.0/24\ncidr\t2001:db8::/32\n"
    )
    names = tmp_path / "names.entries"
    names.write_text(
        "# feed phish category phishing\ndomain\tphish.example\nwildcard\tbad.example\n"
    )
    cfg = DnsblConfig(
        zone="bl.test." if kind == "ip" else "dbl.test.",
        kind=kind,
        lookup_url="https://bl.test/lookup?q={}",
    )
    return Responder(cfg, [ips if kind == "ip" else names])


NIBBLES = ".".join(reversed("20010db8000000000000000000000001"))
CASES = [
    ("ip", "7.100.51.198.bl.test", "A"),
    ("ip", "7.100.51.198.bl.test", "TXT"),
    ("ip", "7.100.51.198.BL.Test", "ANY"),  # 0x20 case kept in the question
    ("ip", "9.113.0.203.bl.test", "A"),
    ("ip", "07.100.51.198.bl.test", "A"),  # leading zero: not an address, an error code
    ("ip", "7.100.51.256.bl.test", "A"),
    ("ip", "8.100.51.198.bl.test", "A"),  # not listed: NXDOMAIN + SOA
    ("ip", "8.100.51.198.bl.test", "TXT"),
    ("ip", "2.0.0.127.bl.test", "A"),
    ("ip", "1.0.0.127.bl.test", "A"),
    ("ip", f"{NIBBLES}.bl.test", "A"),
    ("ip", "phish.example.bl.test", "A"),  # a name asked of an IP list: error code
    ("ip", "phish.example.bl.test", "TXT"),
    ("domain", "phish.example.dbl.test", "A"),
    ("domain", "x.y.bad.example.dbl.test", "TXT"),
    ("domain", "bad.example.dbl.test", "A"),  # "*." does not cover the name itself
    ("domain", "test.dbl.test", "A"),
    ("domain", "invalid.dbl.test", "A"),
    ("domain", "7.100.51.198.dbl.test", "A"),
]


@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize(("kind", "qname", "qtype"), CASES)
def test_fast_path_matches_the_dnspython_path(
    tmp_path: Path, kind: str, qname: str, qtype: str, edns: bool
) -> None:
    r = _responder(tmp_path, kind)
    q = (
        dns.message.make_query(qname, qtype, use_edns=0, payload=4096)
        if edns
        else dns.message.make_query(qname, qtype, use_edns=False)
    )
    q.flags &= ~dns.flags.RD if qtype == "TXT" else 0xFFFF  # RD copied either way
    data = q.to_wire()
    fast = r._fast(data, False)
    assert fast is not None
    slow = r._slow(data, False)
    assert slow is not None
    a, b = dns.message.from_wire(fast), dns.message.from_wire(slow)
    assert (a.id, a.flags, a.rcode()) == (b.id, b.flags, b.rcode())
    assert a.question[0].name.to_text() == qname + "."  # the asker's case
    assert (a.answer, a.authority) == (b.answer, b.authority)
    assert a.edns == b.edns == (0 if edns else -1)
    if edns:
        assert a.payload == 1232


def test_odd_queries_go_to_the_slow_path(tmp_path: Path) -> None:
    r = _responder(tmp_path, "ip")
    apex = dns.message.make_query("bl.test", "SOA").to_wire()
    assert r._fast(apex, False) is None and r.handle(apex, None, None, False) is not None
    other_type = dns.message.make_query("7.100.51.198.bl.test", "MX").to_wire()
    assert r._fast(other_type, False) is None
    short = b"\x00" * 11
    assert r._fast(short, False) is None and r.handle(short, None, None, False) is None


def test_a_repeated_query_gets_the_same_answer_under_its_own_id_until_the_data_changes(
    tmp_path: Path,
) -> None:
    r = _responder(tmp_path, "ip")
    q = dns.message.make_query("7.100.51.198.bl.test", "A")
    q.id = 1
    first = r.handle(q.to_wire(), ("127.0.0.1", 1), None, False)
    q.id = 2
    again = r.handle(q.to_wire(), ("127.0.0.1", 1), None, False)
    assert first is not None and again is not None
    assert again[:2] == b"\x00\x02" and again[2:] == first[2:]
    assert r.listed == 2 and r.queries == 2
    # The list changes: the next check of the entries files empties the memo.
    (tmp_path / "ips.entries").write_text("# feed spam-ips category spam\nip\t192.0.2.1\n")
    r.checked -= 10
    after = dns.message.from_wire(r.handle(q.to_wire(), ("127.0.0.1", 1), None, False) or b"")
    assert after.rcode() == dns.rcode.NXDOMAIN and r.listed == 2


def test_long_queries_are_answered_but_not_remembered_and_over_4096_bytes_dropped(
    tmp_path: Path,
) -> None:
    """A padded query kept in the memo would cost its bytes once per distinct query
    (found by a fresh-eyes review: 60 KB a query over TCP)."""
    r = _responder(tmp_path, "ip")
    q = dns.message.make_query("7.100.51.198.bl.test", "A", use_edns=0, pad=468)
    wire = q.to_wire()
    assert len(wire) > 128
    assert r.handle(wire, ("127.0.0.1", 1), None, False) is not None
    assert r._memo == ({}, {})
    small = dns.message.make_query("7.100.51.198.bl.test", "A").to_wire()
    r.handle(small, ("127.0.0.1", 1), None, False)
    assert len(r._memo[0]) == 1 and not r._memo[1]  # the UDP memo
    big_q = dns.message.make_query("7.100.51.198.bl.test", "A", use_edns=0, pad=4500)
    big = big_q.to_wire(max_size=65535)
    assert r.handle(big, ("127.0.0.1", 1), None, False) is None  # UDP: dropped
    assert r.handle(big, ("127.0.0.1", 1), None, True) is not None  # TCP: answered


def test_a_batch_gets_the_answers_and_counts_of_one_query_at_a_time(tmp_path: Path) -> None:
    """handle_batch (the batched UDP listener's call) = handle per datagram: listed,
    not listed, asked again (from the memo), other types, malformed, over 4096 bytes."""
    wires = []
    for name, rdtype in [("7.100.51.198.bl.test", "A"), ("1.0.0.127.bl.test", "TXT"),
                         ("9.113.0.203.bl.test", "A"), ("5.5.5.5.bl.test", "A"),
                         ("bl.test", "SOA"), ("7.100.51.198.bl.test", "MX")]:  # fmt: skip
        for qid in (1, 2):
            q = dns.message.make_query(name, rdtype)
            q.id = qid
            wires.append(q.to_wire())
    wires += [b"\x00\x01junk", b"", wires[0][:14]]
    big = dns.message.make_query("7.100.51.198.bl.test", "A", use_edns=0, pad=4500)
    wires.append(big.to_wire(max_size=65535))
    msgs = [(w, ("127.0.0.1", 5300)) for w in wires * 2]
    one_by_one = _responder(tmp_path, "ip")
    expected = [one_by_one.handle(w, a, None, False) for w, a in msgs]
    batched = Responder(one_by_one.cfg, one_by_one.entries)  # the same files (SOA serial)
    got = batched.handle_batch(msgs, lambda w, a: batched.handle(w, a, None, False))
    assert got == expected
    assert (batched.queries, batched.listed) == (one_by_one.queries, one_by_one.listed)
    assert batched.listed > 0 and any(a is None for a in got)


def test_a_reload_within_a_batch_applies_to_the_rest_of_the_batch(tmp_path: Path) -> None:
    """Found by a fresh-eyes review: a reload done while answering a query the memo did
    not hold left the rest of the batch answered from the old memo (the old data)."""
    r = _responder(tmp_path, "ip")
    listed = dns.message.make_query("7.100.51.198.bl.test", "A").to_wire()
    fresh = dns.message.make_query("9.9.9.9.bl.test", "A").to_wire()
    assert dns.message.from_wire(r.handle(listed, None, None, False) or b"").answer  # remembered
    entries = tmp_path / "ips.entries"
    entries.write_text("# feed spam-ips category spam\nip\t192.0.2.1\n")  # delisted
    os.utime(entries, (time.time() + 5, time.time() + 5))

    def one(wire: bytes, addr: Any) -> bytes | None:
        r.checked -= 3600  # the reload check falls due while this query is answered
        return r.handle(wire, addr, None, False)

    out = r.handle_batch([(fresh, None), (listed, None)], one)
    assert dns.message.from_wire(out[1] or b"").rcode() == dns.rcode.NXDOMAIN


def _rcode_flags(resp: bytes | None) -> tuple[int, int]:
    assert resp is not None and len(resp) >= 12
    m = dns.message.from_wire(resp)
    return m.rcode(), m.flags


@pytest.mark.parametrize("tcp", [False, True])
def test_what_the_fast_path_leaves_is_answered_as_an_authoritative_server_does(
    tmp_path: Path, tcp: bool
) -> None:
    """Found by a fresh-eyes review: class CH got an IN answer, EDNS version 1 and NOTIFY
    were answered with the listing, malformed queries got no answer, a REFUSED had AA."""
    r = _responder(tmp_path, "ip")
    name = "7.100.51.198.bl.test"

    def ask(wire: bytes) -> bytes | None:
        return r.handle(wire, ("127.0.0.1", 1), None, tcp)

    ch = dns.message.make_query(name, "A", rdclass="CH")
    rcode, flags = _rcode_flags(ask(ch.to_wire()))
    assert rcode == dns.rcode.REFUSED and not dns.message.from_wire(ask(ch.to_wire()) or b"").answer
    v1 = dns.message.make_query(name, "A", use_edns=1)
    resp = ask(v1.to_wire())
    assert resp is not None and dns.message.from_wire(resp).rcode() == dns.rcode.BADVERS
    assert not dns.message.from_wire(resp).answer
    notify = dns.message.make_query(name, "A")
    notify.set_opcode(dns.opcode.NOTIFY)
    rcode, flags = _rcode_flags(ask(notify.to_wire()))
    assert rcode == dns.rcode.NOTIMP and not flags & dns.flags.AA
    good = dns.message.make_query(name, "A").to_wire()
    two = bytearray(good)
    two[5] = 2  # QDCOUNT 2 with one question
    for bad in (bytes(two), good + b"junk", good[:-3]):
        rcode, flags = _rcode_flags(ask(bad))
        assert rcode == dns.rcode.FORMERR and not flags & dns.flags.RA
    assert ask(good[:11]) is None  # no header: nothing to answer
    response = bytearray(good)
    response[2] |= 0x80
    assert ask(bytes(response)) is None  # a response: never answered
    outside = dns.message.make_query("www.example.org", "A")
    rcode, flags = _rcode_flags(ask(outside.to_wire()))
    assert rcode == dns.rcode.REFUSED and not flags & dns.flags.AA
    apex = dns.message.from_wire(
        ask(dns.message.make_query("bl.test", "SOA", use_edns=0).to_wire()) or b""
    )
    assert apex.flags & dns.flags.AA and apex.answer and apex.payload == 1232  # as the fast path
    rcode, flags = _rcode_flags(ask(good))  # and the common query still answered
    assert rcode == dns.rcode.NOERROR and flags & dns.flags.AA
