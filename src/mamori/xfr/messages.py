"""Building transfer responses as wire bytes: headers, errors, SOA serials, TSIG.

Messages of an AXFR/IXFR stream are assembled from pre-rendered wire records
(render.py) without dnspython; each is signed with TSIG (RFC 8945) chaining
the MACs across the stream when the request was signed.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

_HDR = struct.Struct("!HHHHHH")


class Signer:
    """TSIG for each message of a response (RFC 8945 5.3.1: chained MACs)."""

    def __init__(self, key: dns.tsig.Key | None, request_mac: bytes) -> None:
        self.key = key
        self.mac = request_mac
        self.ctx: Any = None

    def sign(self, wire: bytes) -> bytes:
        if self.key is None:
            return wire
        msg_id = struct.unpack_from("!H", wire)[0]
        tsig = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
            dns.rdataclass.ANY, dns.rdatatype.TSIG, self.key.algorithm, 0, 300, b"", msg_id, 0, b""
        )
        rd, self.ctx = dns.tsig.sign(  # type: ignore[no-untyped-call]
            wire,
            self.key,
            tsig,
            int(time.time()),
            self.mac if self.ctx is None else None,
            self.ctx,
            True,
        )
        rdata: bytes = rd.to_wire()
        owner = self.key.name.to_wire()
        assert owner is not None
        arcount = struct.unpack_from("!H", wire, 10)[0] + 1
        return (
            wire[:10]
            + struct.pack("!H", arcount)
            + wire[12:]
            + owner
            + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata))
            + rdata
        )


def question_len(data: bytes) -> int:
    i = 12
    while data[i]:
        i += data[i] + 1
    return i + 1 + 4 - 12


def message(request: bytes, rrs: list[bytes], with_question: bool) -> bytes:
    msg_id = struct.unpack_from("!H", request)[0]
    flags = dns.flags.QR | dns.flags.AA
    qwire = request[12 : 12 + question_len(request)] if with_question else b""
    return (
        _HDR.pack(msg_id, flags, 1 if with_question else 0, len(rrs), 0, 0) + qwire + b"".join(rrs)
    )


def error(request: bytes, rcode: int) -> bytes:
    msg_id, qflags = struct.unpack_from("!HH", request)
    flags = dns.flags.QR | (qflags & dns.flags.RD) | (qflags & 0x7800) | rcode
    try:
        qwire = request[12 : 12 + question_len(request)]
        return _HDR.pack(msg_id, flags, 1, 0, 0, 0) + qwire
    except IndexError:
        return _HDR.pack(msg_id, flags, 0, 0, 0, 0)


def with_serial(soa_rr: bytes, serial: int) -> bytes:
    """The SOA RR with another serial (the serial is the 20 bytes before the end, first 4)."""
    return soa_rr[:-20] + struct.pack("!I", serial) + soa_rr[-16:]


def client_serial(q: dns.message.Message) -> int | None:
    for rrset in q.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None
