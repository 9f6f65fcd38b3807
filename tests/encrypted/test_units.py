"""The pure parts of the encrypted transports: EDNS padding (RFC 7830/8467), device
names from clients, DoH cache lifetimes."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rrset
import pytest

from mamori.dnsutil.padding import pad_response, wants_padding
from mamori.resolver.doh import max_age
from mamori.resolver.tls import device_from_sni, device_name


def _answer(padding: bool = False, edns: bool = True) -> bytes:
    q = dns.message.make_query("www.example.test", "A", use_edns=0 if edns else False)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.1"))
    r.answer.append(dns.rrset.from_text("www.example.test.", 60, "IN", "A", "192.0.2.2"))
    return r.to_wire()


@pytest.mark.parametrize("opts", [[], [dns.edns.GenericOption(dns.edns.PADDING, b"\0" * 20)]])
def test_wants_padding_reads_the_option(opts: list[dns.edns.Option]) -> None:
    q = dns.message.make_query("a.example", "A", use_edns=0, options=opts)
    assert wants_padding(q.to_wire()) is bool(opts)


def test_wants_padding_is_false_without_edns_or_for_garbage() -> None:
    assert not wants_padding(dns.message.make_query("a.example", "A").to_wire())
    assert not wants_padding(b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\xff")


def test_padded_answer_is_a_multiple_of_468_and_still_parses() -> None:
    resp = _answer()
    padded = pad_response(resp)
    assert len(padded) % 468 == 0 and len(padded) > len(resp)
    m = dns.message.from_wire(padded)
    pads = [o for o in m.options if o.otype == dns.edns.PADDING]
    assert len(pads) == 1 and m.answer == dns.message.from_wire(resp).answer


def test_answer_without_opt_is_not_padded() -> None:
    resp = _answer(edns=False)
    assert pad_response(resp) == resp


def test_max_age_is_the_smallest_ttl() -> None:
    assert max_age(_answer()) == 60
    assert max_age(b"\x00" * 5) == 0


@pytest.mark.parametrize(
    ("sni", "device"),
    [
        ("phone.dns.example.net", "phone"),
        ("Phone-2.DNS.example.net.", "phone-2"),
        ("dns.example.net", None),
        ("a.b.dns.example.net", None),
        ("phone.other.net", None),
        ("ph_one.dns.example.net", None),
        (None, None),
        ("x" * 64 + ".dns.example.net", None),
    ],
)
def test_device_from_server_name(sni: str | None, device: str | None) -> None:
    assert device_from_sni(sni, "dns.example.net") == device


def test_device_names_are_checked() -> None:
    assert device_name("Kid-Phone") == "kid-phone"
    assert device_name("") is None
    assert device_name("a/b") is None
    assert device_name("a" * 63) == "a" * 63
