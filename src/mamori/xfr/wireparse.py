"""Fast reading of zone transfer messages: wire records to master-file lines.

An AXFR of a feed zone is a million ``CNAME`` records; dnspython builds an
object per record (tens of seconds and gigabytes for a million). Here each
record of the answer section becomes one presentation line
(``owner TTL IN TYPE rdata``) with a hand-written reader for the types policy
zones use (CNAME, A, AAAA, NS, PTR, DNAME, SOA, MX, TXT); any other type goes
through dnspython for that record only. The lines go straight to the zone
file, which the fast loader reads. TSIG is verified on the raw message
(``dns.tsig.validate``), the way dnspython's own reader does.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig

_HDR = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*/")
_SPECIAL = frozenset(b'.\\"();@$ ')
_TYPE_TEXT = {t: dns.rdatatype.to_text(dns.rdatatype.RdataType(t)) for t in range(1, 300)}
_NAME_TYPES = frozenset({2, 5, 12, 39})  # NS, CNAME, PTR, DNAME
TSIG = 250
SOA = 6


class WireFormatError(ValueError):
    """A message that cannot be read."""


@dataclass
class Parsed:
    rcode: int
    msg_id: int
    flags: int
    records: list[tuple[str, int, int, str]]  # owner, ttl, rdtype, rdata (presentation)
    tsig: tuple[dns.name.Name, Any, int] | None  # owner, TSIG rdata, start offset


def parse(msg: bytes) -> Parsed:
    """The answer section as presentation tuples, and the TSIG record if any.

    Raises WireFormatError when the message is cut short or malformed (dnspython's
    DNSException for a malformed TSIG record).
    """
    try:
        return _parse(msg)
    except (struct.error, IndexError) as e:
        raise WireFormatError(f"message cut short or malformed ({e})") from None


def _parse(msg: bytes) -> Parsed:
    if len(msg) < 12:
        raise WireFormatError("short message")
    msg_id, flags, qd, an, ns, ar = _HDR.unpack_from(msg)
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off) + 4
    records: list[tuple[str, int, int, str]] = []
    for _ in range(an):
        owner, off = read_name(msg, off)
        rdtype, _cls, ttl, rdlen = _RR.unpack_from(msg, off)
        off += 10
        end = off + rdlen
        if end > len(msg):
            raise WireFormatError("record runs past the message")
        records.append((owner, ttl, rdtype, _rdata_text(msg, off, rdlen, rdtype)))
        off = end
    for _ in range(ns):
        off = _skip_name(msg, off)
        off += 10 + struct.unpack_from("!H", msg, off + 8)[0]
    tsig = None
    for i in range(ar):
        start = off
        owner_end = _skip_name(msg, off)
        rdtype, _cls, _ttl, rdlen = _RR.unpack_from(msg, owner_end)
        if rdtype == TSIG:
            if i != ar - 1:
                raise WireFormatError("TSIG is not the last record")
            name = dns.name.from_wire(msg, start)[0]
            rd = dns.rdata.from_wire(
                dns.rdataclass.ANY, dns.rdatatype.TSIG, msg, owner_end + 10, rdlen
            )
            tsig = (name, rd, start)
        off = owner_end + 10 + rdlen
    return Parsed(flags & 0xF, msg_id, flags, records, tsig)


def verify_tsig(
    msg: bytes, parsed: Parsed, key: dns.tsig.Key, request_mac: bytes, ctx: Any, first: bool
) -> Any:
    """Check the message's TSIG (chained over a multi-message transfer); the next ctx."""
    if parsed.tsig is None:
        if first:
            raise dns.tsig.BadSignature("the first transfer message is not signed")  # type: ignore[no-untyped-call]
        ctx.update(msg)  # RFC 8945 5.3.1: unsigned messages between signed ones count
        return ctx
    owner, rd, start = parsed.tsig
    if owner != key.name:
        raise dns.tsig.BadKey(f"signed with key {owner}, expected {key.name}")  # type: ignore[no-untyped-call]
    return dns.tsig.validate(  # type: ignore[no-untyped-call]
        msg, key, owner, rd, _now(), request_mac, start, ctx, True
    )


def _now() -> int:
    import time

    return int(time.time())


def _skip_name(msg: bytes, off: int) -> int:
    while True:
        if off >= len(msg):
            raise WireFormatError("name runs past the message")
        ln = msg[off]
        if ln >= 0xC0:
            return off + 2
        if ln > 63:
            raise WireFormatError("bad label length")
        off += ln + 1
        if ln == 0:
            return off


def read_name(msg: bytes, off: int) -> tuple[str, int]:
    """Presentation form (absolute) of the possibly compressed name at *off*."""
    parts: list[str] = []
    end = -1
    hops = 0
    while True:
        if off >= len(msg):
            raise WireFormatError("name runs past the message")
        ln = msg[off]
        if ln >= 0xC0:
            if off + 1 >= len(msg):
                raise WireFormatError("truncated pointer")
            if end < 0:
                end = off + 2
            off = ((ln & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 127:
                raise WireFormatError("compression loop")
            continue
        if ln > 63:
            raise WireFormatError("bad label length")
        off += 1
        if ln == 0:
            break
        label = msg[off : off + ln]
        off += ln
        parts.append(label.decode("ascii") if _PLAIN.issuperset(label) else _escape(label))
    return (".".join(parts) + "." if parts else "."), (end if end >= 0 else off)


def _escape(label: bytes) -> str:
    out = []
    for b in label:
        if b in _SPECIAL:
            out.append("\\" + chr(b))
        elif 0x21 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def _rdata_text(msg: bytes, off: int, rdlen: int, rdtype: int) -> str:
    if rdtype in _NAME_TYPES:
        return read_name(msg, off)[0]
    if rdtype == 1 and rdlen == 4:
        return socket.inet_ntop(socket.AF_INET, msg[off : off + 4])
    if rdtype == 28 and rdlen == 16:
        return socket.inet_ntop(socket.AF_INET6, msg[off : off + 16])
    if rdtype == SOA:
        mname, o = read_name(msg, off)
        rname, o = read_name(msg, o)
        nums = struct.unpack_from("!IIIII", msg, o)
        return f"{mname} {rname} " + " ".join(str(n) for n in nums)
    if rdtype == 15:  # MX
        return f"{struct.unpack_from('!H', msg, off)[0]} {read_name(msg, off + 2)[0]}"
    if rdtype == 16:  # TXT
        strings = []
        o, end = off, off + rdlen
        while o < end:
            n = msg[o]
            strings.append('"' + _txt(msg[o + 1 : o + 1 + n]) + '"')
            o += 1 + n
        return " ".join(strings)
    rd = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.RdataType(rdtype), msg, off, rdlen)
    return rd.to_text(origin=None, relativize=False)


def _txt(data: bytes) -> str:
    out = []
    for b in data:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b <= 0x7E:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def type_text(rdtype: int) -> str:
    return _TYPE_TEXT.get(rdtype) or dns.rdatatype.to_text(dns.rdatatype.RdataType(rdtype))
