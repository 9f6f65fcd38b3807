"""What an answer becomes: every common type in presentation form, RFC 3597 for unknown ones."""

from __future__ import annotations

from pathlib import Path

import dns.message
import dns.rrset

from mamori.pdns.decode import from_wire
from mamori.pdns.model import rdata_name, type_text
from mamori.web.keys import KeyStore, Refused

RECORDS = [
    ("a.example.", "A", "192.0.2.1"),
    ("a.example.", "AAAA", "2001:db8::1"),
    ("c.example.", "CNAME", "a.example."),
    ("example.", "NS", "ns1.example."),
    ("example.", "MX", "10 mx.example."),
    ("example.", "TXT", '"v=spf1 -all"'),
    ("example.", "SOA", "ns1.example. hostmaster.example. 1 3600 600 86400 60"),
    ("1.2.0.192.in-addr.arpa.", "PTR", "a.example."),
    ("_sip._tcp.example.", "SRV", "10 5 5060 sip.example."),
    ("example.", "CAA", '0 issue "letsencrypt.org"'),
    ("example.", "HTTPS", '1 . alpn="h2,h3"'),
    ("_dns.example.", "SVCB", '1 dns.example. alpn="dot"'),
    ("d.example.", "DNAME", "a.example."),
    ("example.", "DS", "12345 13 2 " + "ab" * 32),
    ("u.example.", "TYPE65280", r"\# 3 010203"),
]


def test_every_common_type_and_unknown_ones() -> None:
    q = dns.message.make_query("example.", "ANY")
    r = dns.message.make_response(q)
    for owner, rtype, rdata in RECORDS:
        r.answer.append(dns.rrset.from_text(owner, 300, "IN", rtype, rdata))
    obs, nx = from_wire(r.to_wire(), 1_700_000_000, "t")
    assert nx is None
    got = {(o.rrname, type_text(o.rrtype), o.rdata) for o in obs}
    assert got == {(o, t, d) for o, t, d in RECORDS}
    names = {(type_text(o.rrtype), rdata_name(o.rrtype, o.rdata)) for o in obs}
    assert ("MX", "mx.example.") in names and ("SRV", "sip.example.") in names
    assert ("A", None) in names


def test_key_rate_limit_and_quota(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "k.sqlite")
    key = keys.add("a", rate=1.0, burst=2.0, quota=5)
    t = 1_800_000_000.0
    assert keys.check(key, t) == "a" and keys.check(key, t) == "a"
    try:
        keys.check(key, t)
        raise AssertionError("the third request in the same second must be refused")
    except Refused as e:
        assert e.status == 429 and "rate" in str(e)
    assert keys.check(key, t + 1.0) == "a"  # one token back after a second
    keys.check(key, t + 3.0)
    keys.check(key, t + 5.0)
    try:
        keys.check(key, t + 7.0)
        raise AssertionError("the sixth request of the day must be refused")
    except Refused as e:
        assert e.status == 429 and "quota" in str(e) and e.retry_after > 0
    assert keys.check(key, t + 86400) == "a"  # a new UTC day
    for bad in (None, "", "mk_nope"):
        try:
            keys.check(bad, t)
            raise AssertionError("refused")
        except Refused as e:
            assert e.status == 401
    assert [k.name for k in keys.all_keys()] == ["a"] and keys.remove("a")
