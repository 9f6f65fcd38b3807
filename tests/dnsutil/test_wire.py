from __future__ import annotations

import dns.message
import dns.name
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mamori.dnsutil import wire

labels = st.binary(min_size=1, max_size=63)
names = st.lists(labels, min_size=0, max_size=6).filter(
    lambda ls: sum(len(x) + 1 for x in ls) + 1 <= 255
)


@given(names)
def test_text_and_wire_names_round_trip_like_dnspython(ls: list[bytes]) -> None:
    n = dns.name.Name([*ls, b""])
    wire_form = n.to_wire()
    assert wire.scan_name(wire_form, 0) == len(wire_form)
    text = wire.name_to_text(wire_form)
    assert dns.name.from_text(text) == n
    assert wire.text_to_name(text) == wire_form


def test_scan_name_rejects_compression_and_overruns() -> None:
    with pytest.raises(wire.WireError):
        wire.scan_name(b"\xc0\x0c", 0)
    with pytest.raises(wire.WireError):
        wire.scan_name(b"\x05ab", 0)
    with pytest.raises(wire.WireError):
        wire.scan_name(
            b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x00",
            0,
        )  # 257 octets


def test_parse_opt_reads_payload_version_and_do() -> None:
    q = dns.message.make_query("a.example", "A", use_edns=0, payload=4096, want_dnssec=True)
    data = q.to_wire()
    qend = wire.scan_name(data, 12) + 4
    edns, end = wire.parse_opt(data, qend)
    assert (edns.payload, edns.version, edns.do, end) == (4096, 0, True, len(data))


def test_build_opt_with_ede_is_understood_by_dnspython() -> None:
    q = dns.message.make_query("a.example", "A")
    resp = wire.error_response(
        q.to_wire(), wire.REFUSED, len(q.to_wire()), wire.build_opt(1232, False, 18, "no")
    )
    m = dns.message.from_wire(resp)
    assert m.rcode() == wire.REFUSED and m.id == q.id
    assert m.question[0].name == dns.name.from_text("a.example")
    assert m.options[0].code == 18 and m.options[0].text == "no"


def test_walk_records_finds_every_ttl_like_dnspython() -> None:
    q = dns.message.make_query("www.example", "A", use_edns=0)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.", 123, "IN", "CNAME", "host.example."))
    r.answer.append(dns.rrset.from_text("host.example.", 456, "IN", "A", "192.0.2.1", "192.0.2.2"))
    r.authority.append(dns.rrset.from_text("example.", 789, "IN", "NS", "ns.example."))
    data = r.to_wire()
    qend, refs = wire.walk_records(data)
    assert qend == len(q.question[0].name.to_wire()) + 16
    assert [(x.section, x.rtype, x.ttl) for x in refs] == [
        (1, 5, 123),
        (1, 1, 456),
        (1, 1, 456),
        (2, 2, 789),
        (3, 41, 0),
    ]
    assert refs[-1].end == len(data)
