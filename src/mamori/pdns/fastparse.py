"""DNS answers to observations without dnspython, for the common record types.

A message whose answer and authority sections hold only A, AAAA, CNAME, NS,
PTR, DNAME, MX, SRV, SOA and TXT records with plain names (letters, digits,
``-``, ``_``, ``*``) is decoded here, giving exactly the presentation form
dnspython gives (tests compare the two on real captures and generated
messages). Anything else (another type, a name needing escapes, a malformed
field) returns None and the caller uses dnspython.
"""

from __future__ import annotations

import socket
import struct

from mamori.pdns.model import Nxdomain, Observation

_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")
_HDR = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_SKIP = {41, 250, 249}  # OPT, TSIG, TKEY: never observations
_SINGLETON = {5, 39, 6}  # CNAME, DNAME, SOA: one record per rrset in dnspython


class _Fallback(Exception):  # noqa: N818 - a signal: let dnspython decide
    pass


def _name(data: bytes, off: int) -> tuple[str, int]:
    """(presentation name with the final dot, offset after it in the record)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    n = len(data)
    while True:
        if off >= n:
            raise _Fallback
        ln = data[off]
        if ln == 0:
            off += 1
            break
        if ln >= 0xC0:
            if off + 1 >= n or jumps > 32:
                raise _Fallback
            if end < 0:
                end = off + 2
            off = ((ln & 0x3F) << 8) | data[off + 1]
            jumps += 1
            continue
        if ln > 63 or off + 1 + ln > n:
            raise _Fallback
        label = data[off + 1 : off + 1 + ln]
        if not _PLAIN.issuperset(label):
            raise _Fallback
        labels.append(label.decode("ascii"))
        off += 1 + ln
    text = ".".join(labels) + "." if labels else "."
    if len(text) > 255:
        raise _Fallback
    return text, (end if end >= 0 else off)


def _txt(rd: bytes) -> str:
    parts, i = [], 0
    while i < len(rd):
        ln = rd[i]
        s = rd[i + 1 : i + 1 + ln]
        if len(s) != ln:
            raise _Fallback
        out = []
        for b in s:
            if b in (0x22, 0x5C):
                out.append("\\" + chr(b))
            elif 0x20 <= b < 0x7F:
                out.append(chr(b))
            else:
                out.append(f"\\{b:03d}")
        parts.append('"' + "".join(out) + '"')
        i += 1 + ln
    if not parts:
        raise _Fallback
    return " ".join(parts)


def _rdata(data: bytes, rtype: int, start: int, end: int) -> str:
    rd = data[start:end]
    if rtype == 1:
        if len(rd) != 4:
            raise _Fallback
        return socket.inet_ntop(socket.AF_INET, rd)
    if rtype == 28:
        if len(rd) != 16:
            raise _Fallback
        text = socket.inet_ntop(socket.AF_INET6, rd)
        if "." in text:  # IPv4-mapped/compatible forms: leave them to dnspython's rules
            raise _Fallback
        return text
    if rtype in (2, 5, 12, 39):  # NS CNAME PTR DNAME
        name, after = _name(data, start)
        if after != end:
            raise _Fallback
        return name
    if rtype == 15:  # MX
        if len(rd) < 3:
            raise _Fallback
        name, after = _name(data, start + 2)
        if after != end:
            raise _Fallback
        return f"{struct.unpack_from('!H', data, start)[0]} {name}"
    if rtype == 33:  # SRV
        if len(rd) < 7:
            raise _Fallback
        prio, weight, port = struct.unpack_from("!HHH", data, start)
        name, after = _name(data, start + 6)
        if after != end:
            raise _Fallback
        return f"{prio} {weight} {port} {name}"
    if rtype == 6:  # SOA
        mname, off = _name(data, start)
        rname, off = _name(data, off)
        if off + 20 != end:
            raise _Fallback
        nums = struct.unpack_from("!IIIII", data, off)
        return f"{mname} {rname} " + " ".join(map(str, nums))
    if rtype == 16:
        return _txt(rd)
    raise _Fallback


def observations(
    data: bytes, when: int, sensor: str
) -> tuple[list[Observation], Nxdomain | None] | None:
    """The observations of a response; None: decode it with dnspython instead."""
    try:
        return _observations(data, when, sensor)
    except (_Fallback, struct.error, IndexError, ValueError, OSError):
        return None


def _observations(
    data: bytes, when: int, sensor: str
) -> tuple[list[Observation], Nxdomain | None] | None:
    if len(data) < 12:
        return None
    _id, flags, qd, an, ns, ar = _HDR.unpack_from(data, 0)
    if not flags & 0x8000 or flags & 0x7800 or qd > 1:  # a response to a QUERY
        return None
    off = 12
    qname, qtype = "", 0
    if qd:
        qname, off = _name(data, off)
        qtype, _qclass = struct.unpack_from("!HH", data, off)
        off += 4
    out: list[Observation] = []
    # dnspython's rrsets, per section: repeated records merge, and a singleton
    # type (CNAME, DNAME, SOA) keeps only its last record
    seen: dict[tuple[str, int, str], int] = {}
    single: dict[tuple[str, int], int] = {}
    for i in range(an + ns + ar):
        if i == an:
            seen, single = {}, {}
        owner, off = _name(data, off)
        rtype, rclass, _ttl, rdlen = _RR.unpack_from(data, off)
        off += 10
        end = off + rdlen
        if end > len(data):
            raise _Fallback
        if i < an + ns and rtype not in _SKIP and rclass == 1:
            key = (owner.lower(), rtype, _rdata(data, rtype, off, end))
            if rtype in _SINGLETON and key[:2] in single:
                out[single[key[:2]]] = Observation(*key, "", when, sensor)
            elif key not in seen:
                seen[key] = len(out)
                if rtype in _SINGLETON:
                    single[key[:2]] = len(out)
                out.append(Observation(*key, "", when, sensor))
        off = end  # the additional section is only checked for structure
    nx = None
    if flags & 0x000F == 3 and qd:
        nx = Nxdomain(qname.lower(), qtype, when, sensor)
    return out, nx
