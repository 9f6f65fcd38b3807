"""The fast decoder gives exactly what dnspython gives, or steps aside."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import dns.message
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.pdns import fastparse
from mamori.pdns.model import from_wire_dnspython
from mamori.pdns.sensors.pcap import Reader

PCAP = Path(__file__).resolve().parents[3] / "shared/data/pcap"


def _same(data: bytes) -> bool:
    """True when the fast path decoded *data* (and agreed with dnspython)."""
    fast = fastparse.observations(data, 1, "s")
    try:
        slow = from_wire_dnspython(data, 1, "s")
    except ValueError:
        slow = None
    if fast is None:
        return False
    assert slow is not None, "fast path accepted what dnspython refuses"
    assert sorted(fast[0]) == sorted(slow[0])
    assert fast[1] == slow[1]
    return True


def test_real_captures() -> None:
    decoded = 0
    for path in sorted(PCAP.glob("*.pcap")):
        for msg in Reader().messages(path):
            decoded += _same(msg[5])
    assert decoded >= 350  # every response of the captures takes the fast path


LABEL = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,14}", fullmatch=True)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda ls: ".".join(ls) + ".")
V6 = st.integers(0, 2**128 - 1) | st.sampled_from(
    [0, 1, 2**32, 0xFFFF00000000 | 0x01020304, 0x01020304, 2**112, 0x20010DB8 << 96]
)


def _rdata(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(["A", "AAAA", "CNAME", "NS", "PTR", "MX", "SRV", "SOA", "TXT",
                                 "DNAME", "CAA"]))  # fmt: skip
    if kind == "A":
        return kind, str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    if kind == "AAAA":
        return kind, str(ipaddress.IPv6Address(draw(V6)))
    if kind in ("CNAME", "NS", "PTR", "DNAME"):
        return kind, draw(NAME)
    if kind == "MX":
        return kind, f"{draw(st.integers(0, 65535))} {draw(NAME)}"
    if kind == "SRV":
        n = draw(st.lists(st.integers(0, 65535), min_size=3, max_size=3))
        return kind, f"{n[0]} {n[1]} {n[2]} {draw(NAME)}"
    if kind == "SOA":
        n = draw(st.lists(st.integers(0, 2**32 - 1), min_size=5, max_size=5))
        return kind, f"{draw(NAME)} {draw(NAME)} " + " ".join(map(str, n))
    if kind == "TXT":
        chunks = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=3))
        return kind, " ".join('"' + "".join(f"\\{b:03d}" for b in c) + '"' for c in chunks)
    return kind, '0 issue "ca.example"'  # not decoded here: dnspython's


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    q = dns.message.make_query(draw(NAME), "A")
    r = dns.message.make_response(q)
    if draw(st.booleans()):
        r.set_rcode(3)
    for _ in range(draw(st.integers(0, 5))):
        owner = draw(NAME)
        kind, rdata = _rdata(draw)
        section = r.answer if draw(st.booleans()) else r.authority
        section.append(dns.rrset.from_text(owner, 300, "IN", kind, rdata, rdata))
    return bytes(r.to_wire())


@settings(max_examples=int(os.environ.get("MAMORI_FUZZ_EXAMPLES", "400")), deadline=None)
@given(responses())
def test_generated_responses(data: bytes) -> None:
    _same(data)


def test_steps_aside_for_escaped_names_and_other_types() -> None:
    q = dns.message.make_query("a.example.", "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("we\\.ird.example.", 60, "IN", "A", "192.0.2.1"))
    assert fastparse.observations(r.to_wire(), 1, "s") is None
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("a.example.", 60, "IN", "HINFO", '"x" "y"'))
    assert fastparse.observations(r.to_wire(), 1, "s") is None
    assert fastparse.observations(q.to_wire(), 1, "s") is None  # a query


def test_every_supported_type_takes_the_fast_path() -> None:
    q = dns.message.make_query("example.", "ANY")
    r = dns.message.make_response(q)
    for owner, kind, rdata in [
        ("a.example.", "A", "192.0.2.1"), ("a.example.", "AAAA", "2001:db8::1"),
        ("c.example.", "CNAME", "A.Example."), ("example.", "NS", "ns1.example."),
        ("example.", "MX", "10 mx.example."), ("example.", "TXT", '"v=spf1 \\"q\\" -all" "x"'),
        ("example.", "SOA", "ns1.example. h.example. 1 2 3 4 5"),
        ("1.2.0.192.in-addr.arpa.", "PTR", "a.example."), ("d.example.", "DNAME", "a.example."),
        ("_sip._tcp.example.", "SRV", "10 5 5060 sip.example."),
        ("a.example.", "A", "192.0.2.1"),  # repeated: one observation, as dnspython
    ]:  # fmt: skip
        r.answer.append(dns.rrset.from_text(owner, 300, "IN", kind, rdata))
    assert _same(r.to_wire())
    fast = fastparse.observations(r.to_wire(), 1, "s")
    assert fast is not None and len(fast[0]) == 10


def test_a_singleton_type_keeps_its_last_record_as_dnspython_does() -> None:
    # found by the generated test: two CNAMEs at one owner in the authority section
    data = (
        b"\x192\x81\x00\x00\x01\x00\x00\x00\x03\x00\x00\x010\x00\x00\x01\x00\x01"
        b"\x03100\x00\x00\x05\x00\x01\x00\x00\x01,\x00\x03\x011\x00"
        b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01,\x00\x04\x00\x00\x00\x00"
        b"\xc0\x13\x00\x05\x00\x01\x00\x00\x01,\x00\x02\xc0\x0c"
    )
    assert _same(data)
    fast = fastparse.observations(data, 1, "s")
    assert fast is not None
    assert [(o.rrname, o.rdata) for o in fast[0] if o.rrtype == 5] == [("100.", "0.")]
