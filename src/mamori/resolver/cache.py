"""Answer cache holding upstream responses as wire bytes (before policy).

An entry keeps the response body (answer, authority and additional sections,
without the upstream's OPT record) exactly as the upstream sent it, plus the
offsets of every TTL field. A hit re-renders the TTLs at most once per second
and otherwise is a few byte concatenations: no dnspython on the hit path.

Key: lowercased wire qname + qtype + qclass + one byte of DO/CD bits.
TTLs: positive answers live min(TTL of answer+authority) clamped to
[min_ttl, max_ttl]; negative answers (NXDOMAIN / NODATA) live
min(SOA TTL, SOA MINIMUM) capped by max_negative_ttl (RFC 2308 section 5).
Serve-stale (RFC 8767): expired entries are kept up to stale_max_age.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from mamori.dnsutil import wire
from mamori.policy.model import Match

_PACK_I = struct.Struct("!I").pack_into
_HDR = struct.Struct("!HHHHHH")
ENTRY_OVERHEAD = 240  # approximate bytes of Python objects per entry, for max_bytes


class Entry:
    """One cached answer."""

    __slots__ = (
        "addrs",
        "an_ns_len",
        "auth_ns",
        "body",
        "born",
        "chain",
        "counts",
        "counts_edns",
        "counts_short",
        "counts_short_edns",
        "expires",
        "flags",
        "policy_version",
        "rcode",
        "rendered",
        "rendered_age",
        "retry_after",
        "rewrite",
        "size",
        "stale_until",
        "summary",
        "tail",
        "tail_of",
        "tail_until",
        "ttl_offsets",
        "ttls",
    )

    def __init__(
        self,
        body: bytes,
        ttl_offsets: list[int],
        ttls: list[int],
        flags: int,
        counts: tuple[int, int, int],
        an_ns_len: int,
        born: float,
        lifetime: int,
        stale_max_age: int,
        rcode: int,
        summary: str,
    ) -> None:
        an, ns, ar = counts
        self.body = body
        self.ttl_offsets = ttl_offsets
        self.ttls = ttls
        # flags for RD=0 and RD=1 (index = query RD bit)
        self.flags = (struct.pack("!H", flags & ~wire.RD), struct.pack("!H", flags | wire.RD))
        self.counts = struct.pack("!HHHH", 1, an, ns, ar)
        self.counts_edns = struct.pack("!HHHH", 1, an, ns, ar + 1)
        self.counts_short = struct.pack("!HHHH", 1, an, ns, 0)
        self.counts_short_edns = struct.pack("!HHHH", 1, an, ns, 1)
        self.an_ns_len = an_ns_len
        self.born = born
        self.expires = born + lifetime
        self.stale_until = self.expires + stale_max_age
        self.rcode = rcode
        self.summary = summary
        self.rendered = body
        self.rendered_age = 0
        # The answer after its flags for the last remembered query (pipeline.QuestionMemo,
        # compared by identity; never None) until tail_until (UNIX seconds, the end of
        # the second of age it was made at): counts, question, body at that age, OPT.
        self.tail_of: object = False
        self.tail = b""
        self.tail_until = 0.0
        self.size = len(body) + ENTRY_OVERHEAD
        self.retry_after = 0.0  # serve-stale: do not ask upstream again before this time
        self.policy_version = 0  # policy version under which no rule matched this key
        self.addrs: tuple[tuple[int, int], ...] = ()  # (version, int) of answer A/AAAA
        # CNAME targets in the answer, in chain order (lowercased wire names)
        self.chain: tuple[bytes, ...] = ()
        # NS records in the authority section (the zone of the answer's last name)
        # and their glue: (NS names as lowercased wire, (version, int) addresses)
        self.auth_ns: tuple[tuple[bytes, ...], tuple[tuple[int, int], ...]] | None = None
        # Memo of the policy decision made after resolution (Response-IP, NSDNAME,
        # NSIP, names in the CNAME chain): (policy version, zone limit, decision, the
        # log-only zones' matches met on the way: logged again on every hit)
        self.rewrite: tuple[int, int, tuple[Match, int] | None, tuple[Match, ...]] | None = None

    def render(self, age: int) -> bytes:
        """Body with every TTL decreased by *age* seconds (floored at 0)."""
        if age == self.rendered_age:
            return self.rendered
        buf = bytearray(self.body)
        for off, ttl in zip(self.ttl_offsets, self.ttls, strict=True):
            _PACK_I(buf, off, ttl - age if ttl > age else 0)
        self.rendered = out = bytes(buf)
        self.rendered_age = age
        return out

    def render_fixed(self, ttl: int) -> bytes:
        """Body with every TTL set to *ttl* (stale answers, RFC 8767 section 4)."""
        buf = bytearray(self.body)
        for off in self.ttl_offsets:
            _PACK_I(buf, off, ttl)
        return bytes(buf)


class UpstreamAnswerError(ValueError):
    """An upstream answer that cannot be used (malformed, wrong question)."""


def entry_from_response(
    resp: bytes,
    question: bytes,
    now: float,
    min_ttl: int,
    max_ttl: int,
    max_negative_ttl: int,
    stale_max_age: int,
    keep_ad: bool,
    cd: bool = False,
) -> tuple[Entry, int]:
    """Build an entry from an upstream answer; return it and its cache lifetime.

    *question* is the lowercased wire question (name + type + class) we asked.
    *cd*: the CD bit of the queries the entry answers (part of the cache key): set in
    its answers, as RFC 4035 section 3.2.2 asks (an upstream need not copy it).
    Lifetime 0 means: relay, do not cache.
    """
    try:
        msg = dns.message.from_wire(resp, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError) as e:
        raise UpstreamAnswerError(f"malformed answer: {e}") from e
    try:
        qend, refs = wire.walk_records(resp)
    except wire.WireError as e:
        raise UpstreamAnswerError(f"malformed answer: {e}") from e
    if qend != 12 + len(question) or not wire.same_question(resp, question):
        raise UpstreamAnswerError("answer is for another question")
    rcode = int(msg.rcode())  # a plain int: events cross process boundaries (marshal)
    # Drop the OPT record; only a trailing one can be cut without moving offsets.
    opt_refs = [r for r in refs if r.rtype == wire.TYPE_OPT]
    if opt_refs and opt_refs[-1] is not refs[-1]:
        raise UpstreamAnswerError("OPT record is not the last record")
    end = opt_refs[-1].start if opt_refs else (refs[-1].end if refs else qend)
    refs = [r for r in refs if r.rtype != wire.TYPE_OPT]
    _, flags, _, an, ns, ar = _HDR.unpack_from(resp, 0)
    ar -= len(opt_refs)

    lifetime, ttls = _ttls(msg, refs, rcode, an, min_ttl, max_ttl, max_negative_ttl)
    offsets = [r.ttl_offset - qend for r in refs]
    body = bytearray(resp[qend:end])
    for off, ttl in zip(offsets, ttls, strict=True):
        _PACK_I(body, off, ttl)
    an_ns_len = (refs[an + ns - 1].end - qend) if an + ns else 0
    out_flags = wire.QR | wire.RA | (flags & wire.AD if keep_ad else 0) | (wire.CD if cd else 0)
    out_flags |= rcode & 0xF
    entry = Entry(
        bytes(body),
        offsets,
        ttls,
        out_flags,
        (an, ns, ar),
        an_ns_len,
        now,
        lifetime,
        stale_max_age,
        rcode,
        _summary(msg),
    )
    entry.addrs = tuple(
        (4 if rrset.rdtype == dns.rdatatype.A else 6, int(ipaddress.ip_address(rd.address)))
        for rrset in msg.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rd in rrset
    )
    entry.chain = _chain(msg, question[:-4])
    entry.auth_ns = _auth_ns(msg)
    return entry, lifetime


def _auth_ns(
    msg: dns.message.Message,
) -> tuple[tuple[bytes, ...], tuple[tuple[int, int], ...]] | None:
    """NS names in the authority section with the addresses of their glue."""
    targets = [
        rd.target for rrset in msg.authority if rrset.rdtype == dns.rdatatype.NS for rd in rrset
    ]
    if not targets:
        return None
    wanted = set(targets)
    addrs = tuple(
        (4 if rrset.rdtype == dns.rdatatype.A else 6, int(ipaddress.ip_address(rd.address)))
        for rrset in msg.additional
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and rrset.name in wanted
        for rd in rrset
    )
    return tuple(t.to_wire().lower() for t in targets), addrs


MAX_CHAIN_NAMES = 16


def _chain(msg: dns.message.Message, qname: bytes) -> tuple[bytes, ...]:
    """Targets of the CNAMEs leading from *qname* through the answer section."""
    cnames = {
        rrset.name.to_wire().lower(): rrset[0].target.to_wire().lower()  # type: ignore[union-attr]
        for rrset in msg.answer
        if rrset.rdtype == dns.rdatatype.CNAME and len(rrset)
    }
    out: list[bytes] = []
    name = qname
    while name in cnames and len(out) < MAX_CHAIN_NAMES:
        name = cnames[name]
        if name in out:
            break  # a loop
        out.append(name)
    return tuple(out)


def _ttls(
    msg: dns.message.Message,
    refs: list[wire.RecordRef],
    rcode: int,
    an: int,
    min_ttl: int,
    max_ttl: int,
    max_negative_ttl: int,
) -> tuple[int, list[int]]:
    """Per-record TTLs to serve and the cache lifetime of the whole answer."""
    # RFC 2181 8: a TTL with the top bit set is treated as zero.
    raw = [r.ttl if r.ttl < 0x80000000 else 0 for r in refs]
    negative = rcode == dns.rcode.NXDOMAIN or (rcode == dns.rcode.NOERROR and an == 0)
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return 0, raw
    if negative:
        soa = next((r for r in msg.authority if r.rdtype == dns.rdatatype.SOA), None)
        if soa is None:
            return 0, raw  # RFC 2308 5: no SOA, do not cache
        neg = min(soa.ttl, soa[0].minimum, max_negative_ttl)
        ttls = [
            min(t, neg) if r.section == 2 and r.rtype == wire.TYPE_SOA else t
            for r, t in zip(refs, raw, strict=True)
        ]
        chain = [t for r, t in zip(refs, ttls, strict=True) if r.section == 1]
        return min([neg, *chain]), ttls
    ttls = [min(max(t, min_ttl), max_ttl) for t in raw]
    core = [t for r, t in zip(refs, ttls, strict=True) if r.section in (1, 2)]
    return (min(core) if core else 0), ttls


def _summary(msg: dns.message.Message, limit: int = 8) -> str:
    """Short text of the answer section for the query log: "CNAME a.b.;A 192.0.2.1"."""
    parts: list[str] = []
    for rrset in msg.answer:
        tname = dns.rdatatype.to_text(rrset.rdtype)
        for rd in rrset:
            if len(parts) >= limit:
                parts.append("...")
                return ";".join(parts)
            parts.append(f"{tname} {rd.to_text()}")
    return ";".join(parts)


class Cache:
    """Bounded LRU map of key -> Entry, limited by entry count and bytes."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.data: OrderedDict[bytes, Entry] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: bytes) -> Entry | None:
        entry = self.data.get(key)
        if entry is not None:
            self.data.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: Entry) -> None:
        if self.max_entries == 0:
            return
        old = self.data.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self.data[key] = entry
        self.bytes += entry.size
        while len(self.data) > self.max_entries or self.bytes > self.max_bytes:
            _, victim = self.data.popitem(last=False)
            self.bytes -= victim.size
            self.evictions += 1

    def resize(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        while self.data and (len(self.data) > max_entries or self.bytes > max_bytes):
            _, victim = self.data.popitem(last=False)
            self.bytes -= victim.size
            self.evictions += 1

    def purge_stale(self, now: float) -> int:
        """Remove entries past their serve-stale window; return how many."""
        dead = [k for k, e in self.data.items() if e.stale_until <= now]
        for k in dead:
            self.bytes -= self.data.pop(k).size
        return len(dead)
