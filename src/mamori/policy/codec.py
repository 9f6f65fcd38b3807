"""Rules and records as small marshal-able tuples (the compiled zone's rule blobs, overlays).

Only Local-Data QNAME rules and the rarer trigger kinds (Client-IP,
Response-IP, NSDNAME, NSIP) are stored this way; simple QNAME actions are
compact codes (``rules.SIMPLE_CODES``). Record data is kept as uncompressed
wire rdata (RFC 1035 3.3) and decoded with dnspython on first use.
"""

from __future__ import annotations

import struct
from collections.abc import Generator, Sequence

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mamori.errors import MamoriError
from mamori.policy.hashtable import Buffer
from mamori.policy.model import Action, LocalRecord, Rule, Trigger

RecordTuple = tuple[int, int, bytes]  # (rdtype, ttl in seconds, wire rdata)
RuleTuple = tuple[int, str, str, bool, bytes, tuple[RecordTuple, ...]]
_COUNT = struct.Struct("=II")


class BlobError(MamoriError, ValueError):
    """A rule blob that does not fit its buffer (truncated or corrupt file)."""


def encode_record(rec: LocalRecord, origin: dns.name.Name) -> RecordTuple:
    """(rdtype, ttl, rdata wire); relative names in the rdata are made absolute with *origin*."""
    return int(rec.rdtype), int(rec.ttl), bytes(rec.rdata.to_wire(origin=origin) or b"")


def decode_record(t: RecordTuple) -> LocalRecord:
    """The record of ``encode_record`` (dnspython parses the wire rdata; slow path)."""
    rdtype, ttl, data = t
    rd = dns.rdata.from_wire(
        dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype), data, 0, len(data)
    )
    return LocalRecord(rdtype, ttl, rd)


def encode_rule(rule: Rule, origin: dns.name.Name) -> RuleTuple:
    records = tuple(encode_record(r, origin) for r in rule.records)
    return (
        int(rule.trigger),
        rule.owner,
        rule.action.value,
        rule.wildcard,
        rule.match_key,
        records,
    )


def decode_rule(zone: str, t: RuleTuple, zone_index: int = 0) -> Rule:
    """The Rule of a tuple; *zone_index*: the zone's position in the policy."""
    trigger, owner, action, wildcard, key, records = t
    recs = tuple(decode_record(r) for r in records)
    return Rule(zone, zone_index, Trigger(trigger), owner, Action(action), recs, wildcard, key)


def blob_steps(items: Sequence[bytes], at: int) -> Generator[None, None, bytes]:
    """A list of byte strings placed at buffer offset *at*: count, absolute offsets, data.

    Layout (native uint32): count, 0, ``count + 1`` absolute offsets (item i
    is ``buf[off[i]:off[i + 1]]``), the data, zero padding to 8 bytes.
    """
    from array import array

    offsets = array("I")
    pos = at + _COUNT.size + 4 * (len(items) + 1)
    data = bytearray()
    for i, item in enumerate(items):
        if not i % 4096:
            yield
        offsets.append(pos + len(data))
        data += item
    offsets.append(pos + len(data))
    if pos + len(data) >= 1 << 32:
        raise ValueError("compiled zone larger than 4 GiB")
    data += bytes(-(_COUNT.size + 4 * len(offsets) + len(data)) % 8)
    return _COUNT.pack(len(items), 0) + offsets.tobytes() + bytes(data)


class Blob:
    """Read side of a blob: ``get(i)`` returns item i as bytes."""

    __slots__ = ("buf", "end", "n", "offsets")

    def __init__(self, buf: Buffer, view: memoryview, at: int) -> None:
        if at < 0 or at + _COUNT.size > len(view):
            raise BlobError(f"rule blob at offset {at} outside the buffer")
        n, _ = _COUNT.unpack_from(view, at)
        start = at + _COUNT.size
        if start + 4 * (n + 1) > len(view):
            raise BlobError(f"rule blob at offset {at}: truncated")
        self.buf = buf
        self.n: int = n
        self.offsets = view[start : start + 4 * (n + 1)].cast("I")
        last = self.offsets[n]
        if last > len(view):
            self.offsets.release()
            raise BlobError(f"rule blob at offset {at}: truncated")
        self.end = last + (-(last - at) % 8)

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> bytes:
        return bytes(self.buf[self.offsets[i] : self.offsets[i + 1]])

    def release(self) -> None:
        self.offsets.release()
