"""Reading transfer streams: AXFR form, IXFR sequences (RFC 1995), malformed ones."""

from __future__ import annotations

import dns.name
import dns.rdata
import pytest

from mamori.config import Endpoint
from mamori.xfr import client
from mamori.xfr.client import RR

P = Endpoint("127.0.0.1", 53)


def _soa(serial: int) -> RR:
    rd = dns.rdata.from_text("IN", "SOA", f"ns.z. h.z. {serial} 60 30 600 30")
    return dns.name.from_text("z."), 60, rd


def _rr(name: str, target: str = ".") -> RR:
    rd = dns.rdata.from_text("IN", "CNAME", target)
    return dns.name.from_text(name), 60, rd


def test_axfr_form_is_the_whole_zone() -> None:
    rrs = [_soa(5), _rr("a.z."), _rr("b.z."), _soa(5)]
    assert client._ended(rrs, 5, ixfr=False)
    out = client._interpret(rrs, 5, P)
    assert isinstance(out, client.FullZone) and out.serial == 5 and len(out.records) == 3


def test_ixfr_sequences_become_deltas_in_order() -> None:
    rrs = [
        _soa(3),
        _soa(1), _rr("a.z."), _soa(2), _rr("b.z."),  # 1 -> 2: a deleted, b added
        _soa(2), _soa(3), _rr("c.z."),  # 2 -> 3: c added
        _soa(3),
    ]  # fmt: skip
    assert not client._ended(rrs[:7], 3, ixfr=True)  # the SOA 3 opening the additions
    assert client._ended(rrs, 3, ixfr=True)
    out = client._interpret(rrs, 3, P)
    assert isinstance(out, client.Incremental)
    assert [(d.old, d.new) for d in out.deltas] == [(1, 2), (2, 3)]
    assert [r[0].to_text() for r in out.deltas[0].deleted] == ["z.", "a.z."]
    assert [r[0].to_text() for r in out.deltas[1].added] == ["z.", "c.z."]


def test_malformed_ixfr_is_an_error() -> None:
    with pytest.raises(client.TransferError, match="malformed IXFR"):
        client._interpret([_soa(3), _soa(1), _rr("a.z."), _soa(3)], 3, P)


def test_serial_arithmetic_wraps() -> None:
    assert client._serial_le(5, 5) and client._serial_le(4, 5)
    assert client._serial_le(0xFFFFFFF0, 3)  # 3 is after the wrap
    assert not client._serial_le(3, 0xFFFFFFF0)
