from __future__ import annotations

import dns.message
import dns.rrset

from mamori.dnsutil import wire
from mamori.resolver.cache import Cache, entry_from_response


def _question(name: str, rtype: str = "A") -> bytes:
    q = dns.message.make_query(name, rtype).to_wire()
    return q[12:].lower()


def _response(
    name: str, *rrsets: tuple[str, int, str, str], section: str = "answer", rcode: int = 0
) -> bytes:
    q = dns.message.make_query(name, "A", use_edns=0)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for owner, ttl, rtype, rdata in rrsets:
        getattr(r, section).append(dns.rrset.from_text(owner, ttl, "IN", rtype, rdata))
    return r.to_wire()


def _entry(resp: bytes, name: str, now: float = 1000.0, **kw: int) -> tuple[object, int]:
    args = {"min_ttl": 0, "max_ttl": 86400, "max_negative_ttl": 3600, "stale_max_age": 0}
    args.update(kw)
    return entry_from_response(resp, _question(name), now, keep_ad=False, **args)  # type: ignore[arg-type]


def test_positive_lifetime_is_min_ttl_and_opt_is_stripped() -> None:
    resp = _response(
        "a.example.",
        ("a.example.", 300, "CNAME", "b.example."),
        ("b.example.", 60, "A", "192.0.2.1"),
    )
    entry, life = _entry(resp, "a.example.")
    assert life == 60
    assert entry.counts == b"\x00\x01\x00\x02\x00\x00\x00\x00"  # type: ignore[attr-defined]
    assert b"\x00\x00\x29" not in entry.body  # type: ignore[attr-defined]


def test_ttls_are_clamped_to_min_and_max() -> None:
    resp = _response("a.example.", ("a.example.", 5, "A", "192.0.2.1"))
    assert _entry(resp, "a.example.", min_ttl=30)[1] == 30
    resp = _response("a.example.", ("a.example.", 999999, "A", "192.0.2.1"))
    entry, life = _entry(resp, "a.example.", max_ttl=3600)
    assert life == 3600
    assert entry.ttls == [3600]  # type: ignore[attr-defined]


def test_negative_lifetime_is_soa_minimum_capped() -> None:
    soa = ("example.", 900, "SOA", "ns.example. host.example. 1 2 3 4 120")
    resp = _response("x.example.", soa, section="authority", rcode=3)
    entry, life = _entry(resp, "x.example.")
    assert life == 120
    assert entry.ttls == [120]  # type: ignore[attr-defined]
    assert _entry(resp, "x.example.", max_negative_ttl=30)[1] == 30


def test_negative_answer_without_soa_is_not_cached() -> None:
    resp = _response("x.example.", rcode=3)
    assert _entry(resp, "x.example.")[1] == 0


def test_servfail_is_not_cached() -> None:
    resp = _response("x.example.", rcode=2)
    assert _entry(resp, "x.example.")[1] == 0


def test_render_decrements_ttls_and_floors_at_zero() -> None:
    resp = _response("a.example.", ("a.example.", 10, "A", "192.0.2.1"))
    entry, _ = _entry(resp, "a.example.")
    qend = 12 + len(_question("a.example."))
    for age, expect in ((0, 10), (4, 6), (15, 0)):
        body = entry.render(age)  # type: ignore[attr-defined]
        msg = dns.message.from_wire(resp[:4] + entry.counts + resp[12:qend] + body)  # type: ignore[attr-defined]
        assert msg.answer[0].ttl == expect


def test_answer_for_another_question_is_rejected() -> None:
    resp = _response("a.example.", ("a.example.", 10, "A", "192.0.2.1"))
    try:
        _entry(resp, "b.example.")
    except ValueError as e:
        assert "another question" in str(e)
    else:
        raise AssertionError("accepted a mismatched answer")


def test_lru_evicts_by_entries_and_by_bytes() -> None:
    resp = _response("a.example.", ("a.example.", 10, "A", "192.0.2.1"))
    entry, _ = _entry(resp, "a.example.")
    c = Cache(max_entries=3, max_bytes=10**9)
    for k in (b"a", b"b", b"c"):
        c.put(k, entry)  # type: ignore[arg-type]
    c.get(b"a")  # a is now most recently used
    c.put(b"d", entry)  # type: ignore[arg-type]
    assert set(c.data) == {b"a", b"c", b"d"} and c.evictions == 1
    size = entry.size  # type: ignore[attr-defined]
    c.resize(100, size * 2)
    assert len(c) == 2 and c.bytes <= size * 2


def test_wire_rcode_constants_match_dnspython() -> None:
    import dns.rcode

    assert (wire.NXDOMAIN, wire.SERVFAIL, wire.REFUSED) == (
        dns.rcode.NXDOMAIN,
        dns.rcode.SERVFAIL,
        dns.rcode.REFUSED,
    )
