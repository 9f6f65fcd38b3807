"""Compiled policy zones: one read-only buffer per zone, shared by every worker.

The control plane compiles a ``LoadedZone`` once (``compile_steps``, in
compiler.py) and writes the bytes to a file; each data-plane worker maps that
file with mmap and answers from it (``CompiledZone``), so the page cache holds
one copy for all workers and a restart serves at once from the last file on
disk. Lookups keep the RPZ semantics of draft-vixie-dnsop-dns-rpz and the
BIND 9 ARM:

* QNAME: an exact owner beats a wildcard; ``*.parent`` matches a name strictly
  below ``parent`` when ``parent`` is its closest encloser (RFC 4592, as BIND 9
  matches policy zones): no name between them exists in the zone, neither an
  owner nor an empty non-terminal (``*`` alone: below the apex);
* NSDNAME: the same over name server names;
* Client-IP, Response-IP, NSIP: longest prefix per address family.

Incremental updates arrive as overlays (overlay.py) applied with
``with_overlay``. The file format is described in layout.py.
"""

from __future__ import annotations

import marshal
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from mamori.policy import codec, hashtable
from mamori.policy.compiler import compile_parts_steps, compile_steps, compile_zone
from mamori.policy.layout import (
    CRC_CHUNK,
    FORMAT_VERSION,
    HEAD,
    HEADER_SIZE,
    IP_TABLES,
    MAGIC,
    ORDER,
    CompiledZoneError,
    label_count,
    name_lookup,
)
from mamori.policy.model import LocalRecord, Rule, Trigger
from mamori.policy.overlay import (
    DELETED,
    OverlayUnsupported,
    OverlayUnsupportedError,
    ZoneOverlay,
    changed_keys,
)
from mamori.policy.rules import COMPLEX_BASE, simple_rule

__all__ = [
    "FORMAT_VERSION",
    "CompiledZone",
    "CompiledZoneError",
    "OverlayUnsupported",
    "OverlayUnsupportedError",
    "ZoneOverlay",
    "changed_keys",
    "compile_parts_steps",
    "compile_steps",
    "compile_zone",
]

_UNSET: Any = object()
Probe = Callable[[bytes], int | None]


class CompiledZone:
    """A compiled zone over a buffer (``bytes`` or a read-only ``mmap.mmap``).

    Construction checks the header and the metadata CRC and raises
    CompiledZoneError (one line) for a buffer that is truncated, not a
    compiled zone, or of another format, marshal version or byte order. The
    tables themselves are checked by ``verify`` (CRC32 of the whole body),
    which the caller runs once after writing or before trusting a file.
    ``release`` drops the views over the buffer (needed before closing an mmap).
    """

    def __init__(self, buf: hashtable.Buffer) -> None:
        self.buf = buf
        size = len(buf)
        if size < HEADER_SIZE:
            raise CompiledZoneError(f"truncated compiled zone: {size} bytes, header needs 64")
        head = bytes(buf[:HEADER_SIZE])
        magic, fmt, mver, order, _, total, moff, mlen, body_crc, head_crc = HEAD.unpack_from(head)
        if magic != MAGIC:
            raise CompiledZoneError("not a compiled mamori policy zone (bad magic)")
        if fmt != FORMAT_VERSION:
            raise CompiledZoneError(
                f"compiled zone format version {fmt}, this mamori reads {FORMAT_VERSION}: recompile"
            )
        if mver != marshal.version:
            raise CompiledZoneError(
                f"compiled zone uses marshal version {mver}, not {marshal.version}"
            )
        if order != ORDER:
            raise CompiledZoneError("compiled zone has the other byte order: recompile")
        if total != size:
            raise CompiledZoneError(
                f"compiled zone is {size} bytes, its header says {total}: truncated"
            )
        if moff < HEADER_SIZE or moff + mlen != total:
            raise CompiledZoneError("compiled zone header: metadata outside the file")
        meta_bytes = bytes(buf[moff:total])
        if zlib.crc32(meta_bytes, zlib.crc32(head[: HEAD.size - 4])) != head_crc:
            raise CompiledZoneError("compiled zone header or metadata checksum mismatch: corrupt")
        self.crc = head_crc  # identifies this compilation (overlays name the base they fit)
        self.size = total
        self._body_crc = body_crc
        self._view = memoryview(buf)
        self._tables: list[hashtable.Table] = []
        self._blobs: list[codec.Blob] = []
        try:
            self._load(marshal.loads(meta_bytes))
        except (KeyError, TypeError, ValueError, EOFError, StopIteration) as e:
            self.release()
            raise CompiledZoneError(f"compiled zone unusable: {e}") from None

    def _load(self, meta: dict[str, Any]) -> None:
        self.name: str = meta["name"]
        self.serial: int = meta["serial"]
        self.source: str = meta["source"]
        self.simple_ttl: int | None = meta["simple_ttl"]
        self.skipped: int = meta["skipped"]
        self.skipped_reasons: tuple[str, ...] = meta["skipped_reasons"]
        self.counts = {Trigger(t): n for t, n in meta["counts"].items()}
        self.exact_count: int = meta["exact"]
        self.wild_count: int = meta["wild"]
        self._soa_t = meta["soa"]
        self._ns_t = meta["apex_ns"]
        self._soa: LocalRecord | None = _UNSET
        masks = meta["masks"]
        self._emask, self._wmask, self._nemask, self._nwmask, self._entmask, self._nentmask = masks
        at = iter(meta["sections"])
        buf, view = self.buf, self._view
        tables = self._tables
        for _ in range(6 + len(IP_TABLES)):  # appended one by one: release() finds them all
            tables.append(hashtable.Table(buf, view, next(at)))
        self._exact, self._wild, self._nsd_exact, self._nsd_wild = tables[:4]
        self._ent, self._nsd_ent = tables[4:6]  # empty non-terminals: QNAME, NSDNAME
        self._ip: dict[
            tuple[Trigger, int], tuple[hashtable.Table, tuple[tuple[int, int, int], ...]]
        ]
        self._ip = {}
        for (trigger, version), table in zip(IP_TABLES, tables[6:], strict=True):
            bits = 32 if version == 4 else 128
            lens = meta["ip_lens"][(int(trigger), version)]
            probes = tuple((p, ((1 << p) - 1) << (bits - p), p << bits) for p in lens)
            if probes:
                self._ip[(trigger, version)] = (table, probes)
        self._blobs.append(codec.Blob(buf, view, next(at)))
        self._blobs.append(codec.Blob(buf, view, next(at)))
        self._complex, self._other = self._blobs
        # The probes qname uses (an overlaid view replaces them).
        self._eget: Probe = self._exact.get
        self._wget: Probe = self._wild.get
        self._nget: Probe = self._ent.get

    # ------------------------------------------------------------ metadata
    @property
    def rule_count(self) -> int:
        """Rules of every trigger kind (as ``LoadedZone.rule_count``)."""
        return sum(self.counts.values())

    @property
    def soa(self) -> LocalRecord | None:
        """The apex SOA record (decoded with dnspython on first use)."""
        if self._soa is _UNSET:
            self._soa = codec.decode_record(self._soa_t) if self._soa_t is not None else None
        return self._soa

    @property
    def apex_ns(self) -> list[LocalRecord]:
        """The apex NS records (kept for publishing the zone)."""
        return [codec.decode_record(t) for t in self._ns_t]

    @property
    def base(self) -> CompiledZone:
        """The compiled zone under any overlay (this zone itself here)."""
        return self

    @property
    def overlay(self) -> ZoneOverlay | None:
        """The overlay applied on top of ``base`` (None here)."""
        return None

    def verify(self) -> None:
        """Check the CRC32 of the whole body; CompiledZoneError if it differs."""
        crc = 0
        for i in range(HEADER_SIZE, self.size, CRC_CHUNK):
            crc = zlib.crc32(self._view[i : min(i + CRC_CHUNK, self.size)], crc)
        if crc != self._body_crc:
            raise CompiledZoneError(f"compiled zone {self.name}: body checksum mismatch: corrupt")

    def release(self) -> None:
        """Drop every view over the buffer (an mmap closes only then); lookups fail afterwards.

        An overlaid view shares its base's views: releasing either releases both.
        """
        for table in self._tables:
            table.release()
        for blob in self._blobs:
            blob.release()
        self._view.release()

    # ------------------------------------------------------------- QNAME
    def qname(self, qname: bytes) -> tuple[bytes, bool, int] | None:
        """(matched key, wildcard?, code) of the rule for a lowercased wire *qname*, or None.

        Code < COMPLEX_BASE: a simple action (rules.CODE_ACTIONS); otherwise a
        Local-Data rule. Feed the triple to ``rule_for`` for the Rule. A
        wildcard matches as RFC 4592 says (``layout.name_lookup``).
        """
        wm = self._wmask
        if not wm:
            code = self._eget(qname)
            return None if code is None else (qname, False, code)
        return name_lookup(
            qname, self._emask, wm, self._entmask, self._eget, self._wget, self._nget
        )

    def exact_get(self, key: bytes) -> int | None:
        """Code of the exact QNAME rule for *key* (no wildcard), or None."""
        return self._eget(key)

    def wild_get(self, key: bytes) -> int | None:
        """Code of the wildcard rule ``*.key``, or None."""
        return self._wget(key)

    def empty_nonterminal_get(self, key: bytes) -> int | None:
        """0 if *key* is in the QNAME empty non-terminal table, else None."""
        return self._nget(key)

    def rule_for(self, key: bytes, wildcard: bool, code: int, zone_index: int = 0) -> Rule:
        """The Rule behind a QNAME lookup result (as ``LoadedZone.rule_for``).

        *zone_index*: the zone's position in the policy, stored in the Rule.
        """
        if code >= COMPLEX_BASE:
            t = marshal.loads(self._complex.get(code - COMPLEX_BASE))
            return codec.decode_rule(self.name, t, zone_index)
        return simple_rule(self.name, key, wildcard, code, zone_index)

    def qname_items(self, wildcard: bool) -> Iterator[tuple[bytes, int]]:
        """Every (key, code) of the exact or the wildcard QNAME table."""
        return (self._wild if wildcard else self._exact).items()

    def empty_nonterminals(self) -> Iterator[bytes]:
        """Every key of the QNAME empty non-terminal table (tests, diagnostics): the empty
        non-terminals one label below a wildcard's parent (see compiler.py)."""
        return (k for k, _ in self._ent.items())

    @property
    def complex_limit(self) -> int:
        """One past the highest Local-Data code of this compilation."""
        return COMPLEX_BASE + len(self._complex)

    # ------------------------------------------------- other trigger kinds
    def nsdname(self, name: bytes) -> int | None:
        """Index (for ``other_rule``) of the NSDNAME rule for a wire NS name, or None."""
        found = name_lookup(
            name,
            self._nemask,
            self._nwmask,
            self._nentmask,
            self._nsd_exact.get,
            self._nsd_wild.get,
            self._nsd_ent.get,
        )
        return found[2] if found is not None else None

    def ip_longest(self, trigger: Trigger, version: int, value: int) -> tuple[int, int, int] | None:
        """(prefix length, network, rule index) of the longest prefix containing *value*.

        *trigger*: CLIENT_IP, RESPONSE_IP or NSIP; *version* 4 or 6; *value*
        the address as an int. None when no prefix contains it.
        """
        t = self._ip.get((trigger, version))
        if t is None:
            return None
        table, probes = t
        size = 5 if version == 4 else 17
        for plen, mask, tag in probes:
            network = value & mask
            found = table.get((tag | network).to_bytes(size, "big"))
            if found is not None:
                return plen, network, found
        return None

    def has_ip(self, trigger: Trigger) -> bool:
        """Does the zone have prefixes of *trigger* (CLIENT_IP, RESPONSE_IP, NSIP)?"""
        return (trigger, 4) in self._ip or (trigger, 6) in self._ip

    def other_rule(self, index: int, zone_index: int = 0) -> Rule:
        """Rule *index* of the Client-IP / Response-IP / NSDNAME / NSIP rules."""
        return codec.decode_rule(self.name, marshal.loads(self._other.get(index)), zone_index)

    def rules(self) -> list[Rule]:
        """Every rule as an object (tests, diagnostics; not for big zones)."""
        out = [self.rule_for(k, False, c) for k, c in self.qname_items(False)]
        out += [self.rule_for(k, True, c) for k, c in self.qname_items(True)]
        return out + [self.other_rule(i) for i in range(len(self._other))]

    def with_overlay(self, overlay: ZoneOverlay) -> CompiledZone:
        """A view answering from *overlay* first, then from the base compilation.

        The view shares this zone's buffer; an overlay replaces any overlay
        this zone has. CompiledZoneError if *overlay* was built for another
        compilation.
        """
        return OverlaidZone(self.base, overlay)


class OverlaidZone(CompiledZone):
    """A compiled zone seen through an overlay (``CompiledZone.with_overlay``).

    Shares the base's buffer and tables; QNAME probes ask the overlay's dicts
    first (DELETED hides a base entry). Serial, SOA, apex NS, counts come from
    the overlay; the other trigger kinds from the base.
    """

    def __init__(self, base: CompiledZone, overlay: ZoneOverlay) -> None:
        if overlay.base_crc != base.crc:
            raise CompiledZoneError(
                f"overlay built for compiled zone {overlay.base_crc:08x}, "
                f"not {base.crc:08x} ({base.name})"
            )
        self.__dict__.update(base.__dict__)
        self._base = base
        self._overlay = overlay
        self.serial = overlay.serial
        self.simple_ttl = overlay.simple_ttl
        self._soa_t, self._ns_t, self._soa = overlay.soa, overlay.apex_ns, _UNSET
        self.exact_count = base.exact_count + overlay.exact_delta
        self.wild_count = base.wild_count + overlay.wild_delta
        self.counts = dict(base.counts)
        self.counts[Trigger.QNAME] += overlay.exact_delta + overlay.wild_delta
        for keys, attr in (
            (overlay.exact, "_emask"),
            (overlay.wild, "_wmask"),
            (overlay.empty_nonterminals, "_entmask"),
        ):
            mask = getattr(self, attr)
            for key, code in keys.items():
                if code != DELETED:
                    mask |= 1 << label_count(key)
            setattr(self, attr, mask)
        self._eget = _layered(overlay.exact, base._eget)
        self._wget = _layered(overlay.wild, base._wget)
        self._nget = _layered(overlay.empty_nonterminals, base._nget)

    @property
    def base(self) -> CompiledZone:
        return self._base

    @property
    def overlay(self) -> ZoneOverlay | None:
        return self._overlay

    def rule_for(self, key: bytes, wildcard: bool, code: int, zone_index: int = 0) -> Rule:
        if code >= self._overlay.code_base:
            return codec.decode_rule(self.name, self._overlay.complex[code], zone_index)
        return self._base.rule_for(key, wildcard, code, zone_index)

    def qname_items(self, wildcard: bool) -> Iterator[tuple[bytes, int]]:
        changed = self._overlay.wild if wildcard else self._overlay.exact
        for key, code in self._base.qname_items(wildcard):
            if key not in changed:
                yield key, code
        yield from ((k, c) for k, c in changed.items() if c != DELETED)

    def empty_nonterminals(self) -> Iterator[bytes]:
        changed = self._overlay.empty_nonterminals
        for key in self._base.empty_nonterminals():
            if key not in changed:
                yield key
        yield from (k for k, c in changed.items() if c != DELETED)


def _layered(changed: dict[bytes, int], base: Probe) -> Probe:
    """A probe asking *changed* first, then *base*."""

    def get(key: bytes) -> int | None:
        code = changed.get(key)
        if code is None:
            return base(key)
        return None if code == DELETED else code

    return get
