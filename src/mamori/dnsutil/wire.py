"""Hand-written DNS wire helpers for the per-query fast path (RFC 1035 4.1, RFC 6891).

Nothing here imports dnspython: these functions run for every query and must
stay cheap. They parse only the header, the question and an OPT record, walk
resource records to find TTL fields, and build small error answers.
"""

from __future__ import annotations

import struct

# Header flag bits (second and third header bytes taken as one 16-bit value).
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010

# RCODEs (RFC 1035, RFC 6891 for the extended BADVERS).
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16

# Types and classes used on the fast path.
TYPE_SOA = 6
TYPE_CNAME = 5
TYPE_OPT = 41
TYPE_IXFR = 251
TYPE_AXFR = 252
CLASS_IN = 1

# EDNS: DO flag inside the OPT TTL field, EDE option code (RFC 8914).
EDNS_DO = 0x8000
OPT_EDE = 15

# Extended DNS Error info-codes used by the resolver (RFC 8914 section 4).
EDE_STALE_ANSWER = 3
EDE_BLOCKED = 15
EDE_PROHIBITED = 18
EDE_NO_REACHABLE_AUTHORITY = 22
EDE_NETWORK_ERROR = 23

MAX_NAME_WIRE = 255
_PACK_H = struct.Struct("!H").pack
_HDR = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")


class WireError(ValueError):
    """A packet that does not parse; the caller answers FORMERR or drops it."""


def same_question(msg: bytes, question: bytes) -> bool:
    """Whether *msg* (a whole DNS message) asks *question*: a wire name in lowercase,
    then type and class (4 bytes). The name is compared case-insensitively (0x20
    mixing, RFC 5452 section 9.2), type and class byte for byte: a type such as
    HTTPS (65, ``\x00A``) must not be lowercased with the name.
    """
    n = len(question) - 4
    return (
        n > 0 and msg[12 : 12 + n].lower() == question[:n] and msg[12 + n : 16 + n] == question[n:]
    )


def scan_name(data: bytes, offset: int) -> int:
    """Return the offset just past an uncompressed name starting at *offset*.

    Questions in queries are never compressed (there is nothing to point to),
    so a pointer or an extended label type is a format error here.
    """
    i = offset
    n = len(data)
    while True:
        if i >= n:
            raise WireError("name runs past the end of the packet")
        ln = data[i]
        if ln == 0:
            i += 1
            if i - offset > MAX_NAME_WIRE:
                raise WireError("name longer than 255 octets")
            return i
        if ln > 63:
            raise WireError("compressed or extended label in question")
        i += ln + 1


def skip_name(data: bytes, offset: int) -> int:
    """Return the offset just past a possibly compressed name (no pointer chasing)."""
    i = offset
    n = len(data)
    while True:
        if i >= n:
            raise WireError("name runs past the end of the packet")
        ln = data[i]
        if ln == 0:
            return i + 1
        if ln & 0xC0 == 0xC0:
            if i + 2 > n:
                raise WireError("truncated compression pointer")
            return i + 2
        if ln > 63:
            raise WireError("unknown label type")
        i += ln + 1


_PLAIN_LABEL_BYTES = b"-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def name_to_text(wire: bytes) -> str:
    """Presentation form of an uncompressed wire name (escapes per RFC 4343)."""
    labels: list[str] = []
    i = 0
    while i < len(wire):
        ln = wire[i]
        if ln == 0:
            break
        raw = wire[i + 1 : i + 1 + ln]
        if raw.translate(None, _PLAIN_LABEL_BYTES):
            labels.append("".join(_escape(b) for b in raw))
        else:  # letters, digits, '-' and '_' only: no escaping needed
            labels.append(raw.decode("ascii"))
        i += ln + 1
    return ".".join(labels) + "." if labels else "."


def _escape(b: int) -> str:
    if b in (0x2E, 0x5C, 0x22, 0x28, 0x29, 0x3B, 0x40, 0x24):  # . \ " ( ) ; @ $
        return "\\" + chr(b)
    if 0x21 <= b <= 0x7E:
        return chr(b)
    return f"\\{b:03d}"


def text_to_name(text: str) -> bytes:
    """Wire form of a presentation name (ASCII, no escapes beyond \\DDD and \\X)."""
    if text == ".":
        text = ""
    elif text.endswith("."):
        backslashes = len(text[:-1]) - len(text[:-1].rstrip("\\"))
        if backslashes % 2 == 0:  # the final dot is not escaped: it is the root
            text = text[:-1]
    out = bytearray()
    if text:
        for label in _split_labels(text):
            if not label or len(label) > 63:
                raise WireError(f"bad label in {text!r}")
            out.append(len(label))
            out += label
    out.append(0)
    if len(out) > MAX_NAME_WIRE:
        raise WireError("name longer than 255 octets")
    return bytes(out)


def _split_labels(text: str) -> list[bytes]:
    labels: list[bytes] = []
    cur = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
                cur.append(int(text[i + 1 : i + 4]))
                i += 4
                continue
            cur += text[i + 1].encode("ascii")
            i += 2
            continue
        if c == ".":
            labels.append(bytes(cur))
            cur = bytearray()
        else:
            cur += c.encode("ascii")
        i += 1
    labels.append(bytes(cur))
    return labels


class Edns:
    """What a query's OPT record says (RFC 6891 6.1.2)."""

    __slots__ = ("do", "payload", "version")

    def __init__(self, payload: int, version: int, do: bool) -> None:
        self.payload = payload
        self.version = version
        self.do = do


def parse_opt(data: bytes, offset: int) -> tuple[Edns, int]:
    """Parse an OPT pseudo-RR at *offset*; return it and the offset after it."""
    if offset + 11 > len(data):
        raise WireError("truncated OPT record")
    if data[offset] != 0:
        raise WireError("OPT owner is not the root")
    rtype, payload, ttl, rdlen = _RR_FIXED.unpack_from(data, offset + 1)
    if rtype != TYPE_OPT:
        raise WireError("additional record is not OPT")
    end = offset + 11 + rdlen
    if end > len(data):
        raise WireError("OPT rdata runs past the end")
    version = (ttl >> 16) & 0xFF
    return Edns(max(payload, 512), version, bool(ttl & EDNS_DO)), end


def build_opt(payload: int, do: bool, ede: int | None = None, ede_text: str = "") -> bytes:
    """An OPT pseudo-RR with optional Extended DNS Error option."""
    rdata = b""
    if ede is not None:
        body = _PACK_H(ede) + ede_text.encode("utf-8")
        rdata = _PACK_H(OPT_EDE) + _PACK_H(len(body)) + body
    ttl = EDNS_DO if do else 0
    return b"\x00" + _RR_FIXED.pack(TYPE_OPT, payload, ttl, len(rdata)) + rdata


def build_opt_ext(payload: int, do: bool, ext_rcode: int) -> bytes:
    """An OPT carrying the upper 8 bits of an extended RCODE (e.g. BADVERS)."""
    ttl = (ext_rcode << 24) | (EDNS_DO if do else 0)
    return b"\x00" + _RR_FIXED.pack(TYPE_OPT, payload, ttl, 0)


def error_response(
    data: bytes, rcode: int, qend: int = 0, opt: bytes = b"", tc: bool = False
) -> bytes:
    """A header-only (plus question when *qend*) answer to *data* with *rcode*.

    Copies ID, opcode, RD and CD (RFC 4035 section 3.2.2) from the query; sets QR and RA.
    """
    qid = data[0:2] if len(data) >= 2 else b"\x00\x00"
    b2 = data[2] if len(data) > 2 else 0
    flags = QR | RA | ((b2 & 0x79) << 8) | (rcode & 0xF)  # opcode + RD from query
    if len(data) > 3:
        flags |= data[3] & CD
    if tc:
        flags |= TC
    qd = 1 if qend else 0
    ar = 1 if opt else 0
    return qid + _HDR.pack(0, flags, qd, 0, 0, ar)[2:] + (data[12:qend] if qend else b"") + opt


def build_query(qid: int, qname: bytes, qtype_class: bytes, flags: int, opt: bytes) -> bytes:
    """A query message: *qname* in wire form, *qtype_class* the 4 raw bytes."""
    return _HDR.pack(qid, flags, 1, 0, 0, 1 if opt else 0) + qname + qtype_class + opt


class RecordRef:
    """Position of one resource record inside a message."""

    __slots__ = ("end", "rtype", "section", "start", "ttl", "ttl_offset")

    def __init__(
        self, section: int, start: int, rtype: int, ttl_offset: int, ttl: int, end: int
    ) -> None:
        self.section = section
        self.start = start
        self.rtype = rtype
        self.ttl_offset = ttl_offset
        self.ttl = ttl
        self.end = end


def walk_records(data: bytes) -> tuple[int, list[RecordRef]]:
    """Skip the question section and locate every RR; return (question end, records).

    Sections: 1 answer, 2 authority, 3 additional.
    """
    if len(data) < 12:
        raise WireError("short message")
    _, _, qd, an, ns, ar = _HDR.unpack_from(data, 0)
    i = 12
    for _ in range(qd):
        i = skip_name(data, i) + 4
    qend = i
    if qend > len(data):
        raise WireError("truncated question")
    refs: list[RecordRef] = []
    for section, count in ((1, an), (2, ns), (3, ar)):
        for _ in range(count):
            start = i
            i = skip_name(data, i)
            if i + 10 > len(data):
                raise WireError("truncated resource record")
            rtype, _rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, i)
            end = i + 10 + rdlen
            if end > len(data):
                raise WireError("rdata runs past the end")
            refs.append(RecordRef(section, start, rtype, i + 4, ttl, end))
            i = end
    return qend, refs
