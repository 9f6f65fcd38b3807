"""The DNSBL responder: ``4.3.2.1.bl.example`` / nibbles / ``name.bl.example`` -> codes.

Answers (authoritative, AA):

* listed: ``A`` one return code per category (``data.IP_CODES`` / ``NAME_CODES``),
  ``TXT`` the reason (categories, feeds) and the lookup URL;
* not listed: NXDOMAIN with the zone's SOA (negative caching, RFC 2308);
* RFC 5782 test points: ``2.0.0.127`` and ``::FFFF:7F00:2`` listed,
  ``1.0.0.127`` and ``::FFFF:7F00:1`` not; ``test`` listed, ``invalid`` not;
* a name asked of an IP list, or an address of a name list, or a key that
  is neither: ``A 127.255.255.252`` (an error code, never a listing);
* the apex: SOA and NS.

The usual queries (A, TXT or ANY for a key below the zone, class IN, with or
without EDNS) are parsed and answered on the wire without dnspython, as the
resolver's fast path is; the apex, other opcodes and odd packets go through
dnspython.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections.abc import Callable
from pathlib import Path
from time import monotonic as _monotonic
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from mamori.config import DnsblConfig
from mamori.dnsutil import serial as rfc1982
from mamori.dnsutil import wire as w
from mamori.feeds.publish import dnsbl_data as data_mod

log = logging.getLogger(__name__)

RELOAD_CHECK = 5.0  # seconds between checks of the entries files
MEMO_MAX = 100_000  # answers remembered (by query bytes after the ID); emptied on reload
MEMO_QUERY_MAX = 128  # bytes: longer queries (padding, options) are answered, not remembered
MAX_UDP_QUERY = 4096  # bytes: a longer query over UDP is dropped (as the resolver does)
TEST_IPS = {
    ipaddress.ip_address("127.0.0.2"): True,
    ipaddress.ip_address("127.0.0.1"): False,
    ipaddress.ip_address("::ffff:7f00:2"): True,
    ipaddress.ip_address("::ffff:7f00:1"): False,
}
TEST_NAMES = {"test": True, "invalid": False}
TEST_V4 = {0x7F000002: True, 0x7F000001: False}
TYPE_A, TYPE_TXT, TYPE_ANY = 1, 16, 255
_HDR = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_QTC = struct.Struct("!HH")
EDNS_PAYLOAD = 1232
_NAME_TABLE = {**data_mod.NAME_CODES, **data_mod.NOD_CODES}  # name lists' return codes


class Responder:
    def __init__(self, cfg: DnsblConfig, entries: list[Path]) -> None:
        self.cfg = cfg
        self.zone = dns.name.from_text(cfg.zone)
        self.zone_wire = (self.zone.to_wire() or b"").lower()
        self._soa_rdata: bytes | None = None
        self._a_memo: dict[int, tuple[bytes, ...]] = {}  # id(listing) -> its A records
        self.entries = entries
        self.data = data_mod.load(entries)
        self.serial = _data_serial(self.data)
        self.checked = time.monotonic()
        self.queries = 0
        self.listed = 0
        # query bytes after the ID -> (answer bytes after the ID, 1 if a listing); one
        # memo for UDP, one for TCP (answers differ in their size limit)
        self._memo: tuple[dict[bytes, tuple[bytes, int]], dict[bytes, tuple[bytes, int]]] = (
            {},
            {},
        )

    def handle(self, wire: bytes, addr: Any, reply: Any, tcp: bool) -> bytes | None:
        """The answer to *wire* (None: no answer). A query asked before, byte for byte but
        its ID, is answered from the memo: the same data gives the same answer."""
        self.queries += 1
        if not tcp and len(wire) > MAX_UDP_QUERY:
            return None
        if _monotonic() - self.checked >= RELOAD_CHECK:
            self._maybe_reload()
        memo = self._memo[tcp]
        key = wire[2:]
        hit = memo.get(key)
        if hit is not None:
            self.listed += hit[1]
            return wire[:2] + hit[0]
        listed = self.listed
        fast = self._fast(wire, tcp)
        if fast is None:
            return self._slow(wire, tcp)
        if len(wire) <= MEMO_QUERY_MAX:  # bounded: at most MEMO_MAX small queries
            if len(memo) >= MEMO_MAX:
                memo.clear()
            memo[key] = (fast[2:], self.listed - listed)
        return fast

    def handle_batch(
        self, msgs: list[tuple[bytes, Any]], one: Callable[[bytes, Any], bytes | None]
    ) -> list[bytes | None]:
        """The answers to a batch of UDP datagrams ``(bytes, address)``, in order (None:
        no answer), for batchio.BatchedUdp: the same as ``handle`` for each, with one
        reload check and one count per batch and the memo probed inline. A query not
        remembered goes to *one* (the listener's guarded call of ``handle``)."""
        self.queries += len(msgs)
        if _monotonic() - self.checked >= RELOAD_CHECK:
            self._maybe_reload()
        get = self._memo[0].get
        out: list[bytes | None] = []
        add = out.append
        listed = 0
        for wire, addr in msgs:
            hit = get(wire[2:])
            if hit is not None:  # remembered queries are <= MEMO_QUERY_MAX bytes long
                listed += hit[1]
                add(wire[:2] + hit[0])
            else:
                self.queries -= 1  # handle() counts it
                add(one(wire, addr))
                get = self._memo[0].get  # handle() may have reloaded the data: a new memo
        self.listed += listed
        return out

    # ------------------------------------------------------------ fast path
    def _fast(self, data: bytes, tcp: bool) -> bytes | None:
        """The common query answered on the wire; None: leave it to ``_slow``."""
        if len(data) < 17 or data[2] & 0xF8 or data[3] & 0x0F:  # QR, opcode, rcode bits
            return None
        _id, _fl, qd, an, ns, ar = _HDR.unpack_from(data, 0)
        if qd != 1 or an or ns or ar > 1:
            return None
        try:
            qend = w.scan_name(data, 12)
            if qend + 4 > len(data):
                return None
            qtype, qclass = _QTC.unpack_from(data, qend)
            limit = 65535 if tcp else 512
            opt = b""
            if ar:
                edns, end = w.parse_opt(data, qend + 4)
                if edns.version or end != len(data):
                    return None
                opt = w.build_opt(EDNS_PAYLOAD, False)
                limit = 65535 if tcp else min(edns.payload, EDNS_PAYLOAD)
            elif qend + 4 != len(data):
                return None
        except w.WireError:
            return None
        if qclass != w.CLASS_IN or qtype not in (TYPE_A, TYPE_TXT, TYPE_ANY):
            return None
        qname = data[12:qend].lower()
        cut = len(qname) - len(self.zone_wire)
        if cut <= 0 or qname[cut:] != self.zone_wire or not self._at_label(qname, cut):
            return None  # the apex, or not our zone
        labels = []
        i = 0
        while i < cut:
            ln = qname[i]
            labels.append(qname[i + 1 : i + 1 + ln].decode("ascii", "replace"))
            i += ln + 1
        v4 = _v4_int(labels) if self.cfg.kind == "ip" else None
        if v4 is not None:  # the common case: no ipaddress objects
            if v4 in TEST_V4:
                listing = _test_listing() if TEST_V4[v4] else None
            else:
                listing = self.data.ip_int(4, v4)
            wrong, value = None, ".".join(reversed(labels))
        else:
            listing, wrong, value = self._lookup_labels(labels)
        flags = w.QR | w.AA | (data[2] & 0x01) << 8  # RD copied
        question = data[12 : qend + 4]
        if listing is None and wrong is None:
            soa = self._soa_rr(12 + cut)
            return self._pack(data, flags | w.NXDOMAIN, question, [], [soa], opt, limit)
        self.listed += 1
        answers: list[bytes] = []
        if qtype in (TYPE_A, TYPE_ANY):
            answers.extend(self._a_rrs(listing))
        if qtype in (TYPE_TXT, TYPE_ANY):
            text = (wrong or self._reason(listing, value)).encode("utf-8")
            chunks = b"".join(
                bytes([len(text[j : j + 255])]) + text[j : j + 255]
                for j in range(0, len(text), 255)
            )
            answers.append(b"\xc0\x0c" + _RR.pack(TYPE_TXT, 1, self.cfg.ttl, len(chunks)) + chunks)
        return self._pack(data, flags, question, answers, [], opt, limit)

    def _a_rrs(self, listing: data_mod.Listing | None) -> tuple[bytes, ...]:
        """The A records of a listing's codes (memoised per listing until a reload)."""
        key = id(listing) if listing is not None and "test" not in listing.categories else 0
        rrs = self._a_memo.get(key) if key else None
        if rrs is None:
            codes = self._codes(listing) if listing is not None else [data_mod.WRONG_QUERY]
            head = b"\xc0\x0c" + _RR.pack(TYPE_A, 1, self.cfg.ttl, 4)
            rrs = tuple(head + _ip4(code) for code in codes)
            if key:
                self._a_memo[key] = rrs
        return rrs

    @staticmethod
    def _at_label(qname: bytes, cut: int) -> bool:
        i = 0
        while i < cut:
            i += qname[i] + 1
        return i == cut

    @staticmethod
    def _pack(
        data: bytes,
        flags: int,
        question: bytes,
        answers: list[bytes],
        authority: list[bytes],
        opt: bytes,
        limit: int,
    ) -> bytes:
        ar = 1 if opt else 0
        out = (
            data[:2]
            + _HDR.pack(0, flags, 1, len(answers), len(authority), ar)[2:]
            + question
            + b"".join(answers)
            + b"".join(authority)
            + opt
        )
        if len(out) > limit:  # TC=1: the client retries over TCP
            out = data[:2] + _HDR.pack(0, flags | w.TC, 1, 0, 0, ar)[2:] + question + opt
        return out

    def _soa_rr(self, owner_offset: int) -> bytes:
        """The zone's SOA with its owner compressed to the zone name in the question."""
        if self._soa_rdata is None:
            soa = self._soa()
            self._soa_rdata = soa[0].to_wire(origin=None)
        ttl = min(self.cfg.ttl, 900)
        rd = self._soa_rdata
        return struct.pack("!H", 0xC000 | owner_offset) + _RR.pack(6, 1, ttl, len(rd)) + rd

    # ------------------------------------------------------------ slow path
    def _slow(self, wire: bytes, tcp: bool) -> bytes | None:
        """Everything the fast path leaves: as an authoritative server does (RFC 1035,
        RFC 6891): no header or a response: dropped; an opcode other than QUERY:
        NOTIMP; malformed or not one question: FORMERR; EDNS version > 0: BADVERS; a
        class other than IN: REFUSED; a name outside the zone: REFUSED (not AA)."""
        if len(wire) < 12 or wire[2] & 0x80:
            return None
        if wire[2] & 0x78:
            return _error(wire, dns.rcode.NOTIMP)
        try:
            q = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError):
            return _error(wire, dns.rcode.FORMERR)
        if len(q.question) != 1:
            return _error(wire, dns.rcode.FORMERR)
        r = dns.message.make_response(q, our_payload=EDNS_PAYLOAD)
        r.flags &= ~dns.flags.RA
        if q.edns > 0:
            r.set_rcode(dns.rcode.BADVERS)
            return r.to_wire()
        qname, qtype = q.question[0].name, q.question[0].rdtype
        if q.question[0].rdclass != dns.rdataclass.IN or not qname.is_subdomain(self.zone):
            r.set_rcode(dns.rcode.REFUSED)
            return r.to_wire()
        r.flags |= dns.flags.AA
        key = qname.relativize(self.zone)
        if key == dns.name.empty:
            self._apex(r, qname, qtype)
            return r.to_wire()
        listing, reason, value = self._lookup(key)
        if listing is None and reason is None:
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(self._soa())
            return r.to_wire(max_size=65535 if tcp else 512)
        self.listed += 1
        codes = self._codes(listing) if listing is not None else [data_mod.WRONG_QUERY]
        if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            r.answer.append(dns.rrset.from_text_list(qname, self.cfg.ttl, "IN", "A", codes))
        if qtype in (dns.rdatatype.TXT, dns.rdatatype.ANY):
            text = reason or self._reason(listing, value)
            r.answer.append(
                dns.rrset.from_text_list(qname, self.cfg.ttl, "IN", "TXT", [_quote(text)])
            )
        if not r.answer:  # another type for a listed key: NODATA
            r.authority.append(self._soa())
        return r.to_wire(max_size=65535 if tcp else 512)

    # ---------------------------------------------------------------- lookups
    def _lookup(self, key: dns.name.Name) -> tuple[data_mod.Listing | None, str | None, str]:
        return self._lookup_labels([lb.decode("ascii", "replace").lower() for lb in key.labels])

    def _lookup_labels(self, labels: list[str]) -> tuple[data_mod.Listing | None, str | None, str]:
        """(listing, error reason for a wrong query, the address or name asked about)."""
        ip = _ip_of(labels)
        text = ".".join(labels)
        if self.cfg.kind == "ip":
            if ip is None:
                wrong = "wrong query: this list holds IP addresses (reversed octets or nibbles)"
                return None, wrong, text
            if ip in TEST_IPS:
                return (_test_listing() if TEST_IPS[ip] else None), None, str(ip)
            return self.data.ip(ip), None, str(ip)
        if ip is not None:
            return None, "wrong query: this list holds domain names, not addresses", text
        if text in TEST_NAMES:
            return (_test_listing() if TEST_NAMES[text] else None), None, text
        return self.data.name(text), None, text

    def _codes(self, listing: data_mod.Listing) -> list[str]:
        if "test" in listing.categories:
            return ["127.0.0.2"]  # RFC 5782: the test point answers 127.0.0.2 in every list
        table = data_mod.IP_CODES if self.cfg.kind == "ip" else _NAME_TABLE
        return sorted({table.get(c, table["custom"]) for c in listing.categories})

    def _reason(self, listing: data_mod.Listing | None, value: str) -> str:
        assert listing is not None
        nod = sorted(c for c in listing.categories if c in data_mod.NOD_CODES)
        if nod and len(nod) == len(listing.categories):
            hours = nod[0].split("-")[1]
            text = f"{value}: newly observed domain, first seen less than {hours} hours ago"
            return text + " (mamori nod)"
        cats = ", ".join(sorted(listing.categories))
        text = f"{value} listed by mamori: {cats} (feeds: {', '.join(sorted(listing.feeds))})"
        if self.cfg.lookup_url:
            text += "; see " + self.cfg.lookup_url.replace("{}", value)
        return text

    def _apex(self, r: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            r.answer.append(self._soa())
        if qtype in (dns.rdatatype.NS, dns.rdatatype.ANY):
            r.answer.append(dns.rrset.from_text(qname, self.cfg.ttl, "IN", "NS", "localhost."))
        if not r.answer:
            r.authority.append(self._soa())

    def _soa(self) -> dns.rrset.RRset:
        ttl = min(self.cfg.ttl, 900)
        text = f"localhost. hostmaster.localhost. {self.serial} 3600 600 86400 {ttl}"
        return dns.rrset.from_text(self.zone, min(self.cfg.ttl, 900), "IN", "SOA", text)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self.checked < RELOAD_CHECK:
            return
        self.checked = now
        if data_mod.signature(self.entries) != self.data.signature:
            try:
                self.data = data_mod.load(self.entries)
                # The serial follows the data, forward only (RFC 1982 order): a file
                # put back with an older modification time still makes a newer serial.
                self.serial = rfc1982.forward(self.serial, _data_serial(self.data))
                self._soa_rdata = None
                self._a_memo = {}
                self._memo = ({}, {})
                log.info("dnsbl %s: entries reloaded", self.cfg.zone)
            except (OSError, ValueError) as e:
                log.error("dnsbl %s: reload failed, previous data serving: %s", self.cfg.zone, e)


def _error(wire: bytes, rcode: int) -> bytes:
    """A header-only answer to *wire* (at least 12 bytes) with *rcode*: its ID, opcode
    and RD, QR set, no RA (an authoritative server), no sections."""
    flags = w.QR | (wire[2] & 0x79) << 8 | (rcode & 0xF)
    return wire[:2] + _HDR.pack(0, flags, 0, 0, 0, 0)[2:]


def _data_serial(data: data_mod.Data) -> int:
    """The SOA serial a DNSBL zone's data suggests: the newest modification time of its
    entries files, in UNIX seconds (as a 32-bit serial)."""
    newest = max((s[1] for s in data.signature), default=0) // 1_000_000_000
    return int(newest) % rfc1982.MODULUS


def _ip_of(labels: list[str]) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of a reversed-octet (4 labels) or reversed-nibble (32 labels) key."""
    try:
        if len(labels) == 4 and all(lb.isdigit() for lb in labels):
            return ipaddress.IPv4Address(".".join(reversed(labels)))
        if len(labels) == 32 and all(len(lb) == 1 for lb in labels):
            return ipaddress.IPv6Address(int("".join(reversed(labels)), 16))
    except ValueError:
        return None
    return None


def _v4_int(labels: list[str]) -> int | None:
    """A reversed-octet key as an integer (None unless what IPv4Address accepts)."""
    if len(labels) != 4:
        return None
    v = 0
    for lb in reversed(labels):
        if not lb.isdigit() or not lb.isascii() or (len(lb) > 1 and lb[0] == "0"):
            return None
        n = int(lb)
        if n > 255:
            return None
        v = v << 8 | n
    return v


def _ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def _test_listing() -> data_mod.Listing:
    return data_mod.Listing({"test"}, {"RFC 5782 test point"})


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
