"""Overlays: an incremental update (IXFR, RFC 1995) over a compiled zone, without recompiling.

The control plane applies a delta to its ``LoadedZone`` (``policy.delta``),
then builds a ``ZoneOverlay`` of the QNAME owners the delta touched
(``changed_keys`` of the delta's plan) and ships its bytes to the workers,
which serve ``compiled_zone.with_overlay(overlay)``: the overlay's entries
first, then the base file. Overlays are cumulative: one built over an
overlaid view holds the view's changes plus the new ones, and replaces the
view's overlay. The new SOA (serial), apex NS and counts travel with it, and
so do the empty non-terminals the change makes or removes (RFC 4592: adding
``x.b.a`` makes ``b.a`` exist, so ``*.a`` stops covering it; deleting the
only owner below ``b.a`` gives ``b.a`` back to ``*.a``).

Changes to Client-IP, Response-IP, NSDNAME or NSIP rules are not expressed
as overlays (their tables are in the file): ``changed_keys`` and
``from_changes`` raise OverlayUnsupportedError and the caller recompiles the zone.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import dns.name

from mamori.errors import MamoriError
from mamori.policy import codec
from mamori.policy.layout import CompiledZoneError, proper_ancestors
from mamori.policy.model import Trigger
from mamori.policy.rules import COMPLEX_BASE, LoadedZone, count_below_steps
from mamori.policy.steps import run

if TYPE_CHECKING:
    from mamori.policy.delta import Plan

DELETED = -1  # overlay value: the key has no rule any more (whatever the base says)
_TAG = "mamori-overlay"
OVERLAY_FORMAT = 2  # 2: empty non-terminals


class OverlayUnsupportedError(MamoriError, ValueError):
    """The change cannot be an overlay (other trigger kinds, another zone): recompile."""


OverlayUnsupported = OverlayUnsupportedError  # the name the design notes use


class Compiled(Protocol):
    """What an overlay needs of the compiled zone it is built over (compiled.CompiledZone)."""

    name: str
    crc: int
    exact_count: int
    wild_count: int

    @property
    def base(self) -> Compiled: ...
    @property
    def overlay(self) -> ZoneOverlay | None: ...
    @property
    def rule_count(self) -> int: ...
    @property
    def complex_limit(self) -> int: ...
    def exact_get(self, key: bytes) -> int | None: ...
    def wild_get(self, key: bytes) -> int | None: ...
    def empty_nonterminal_get(self, key: bytes) -> int | None: ...


@dataclass(frozen=True)
class ZoneOverlay:
    """Changed QNAME entries of one zone against one compilation (``base_crc``).

    ``exact``/``wild``: lowercased wire key -> new code (rules.SIMPLE_CODES,
    or >= ``code_base`` for a Local-Data rule in ``complex``), or DELETED.
    ``complex``: code -> rule as a ``codec.RuleTuple``. ``serial``, ``soa``,
    ``apex_ns``, ``simple_ttl``: the zone's apex after the update.
    ``exact_delta``/``wild_delta``: change of the rule counts against the base.
    ``empty_nonterminals``: entries of the QNAME empty non-terminal table that
    differ from the base: wire name -> 0 (now one), or DELETED.
    """

    base_crc: int
    code_base: int
    exact: dict[bytes, int]
    wild: dict[bytes, int]
    complex: dict[int, codec.RuleTuple]
    serial: int
    soa: codec.RecordTuple | None
    apex_ns: tuple[codec.RecordTuple, ...]
    simple_ttl: int | None
    exact_delta: int = 0
    wild_delta: int = 0
    empty_nonterminals: dict[bytes, int] = field(default_factory=dict)

    def __len__(self) -> int:
        """Changed keys (a caller recompiles when this grows large)."""
        return len(self.exact) + len(self.wild)

    def keys(self) -> set[tuple[bytes, bool]]:
        """(wire key, wildcard?) of every entry the overlay changes against its base."""
        return {(k, False) for k in self.exact} | {(k, True) for k in self.wild}

    @classmethod
    def from_changes(
        cls, zone: LoadedZone, base: Compiled, keys: Iterable[tuple[bytes, bool]]
    ) -> ZoneOverlay:
        """The overlay making *base* answer as *zone* does for *keys* ((wire key, wildcard?)).

        *zone* is the LoadedZone after ``delta.apply``. *base* is the compiled
        zone workers serve, or an overlaid view of it: from a view the result
        also carries the view's changes; from the plain compiled zone, give
        every key changed since it was compiled (the previous overlay's
        ``keys()`` and the new ones). Entries equal to the base are left out.
        Raises OverlayUnsupportedError when *zone* is another zone, its count
        of Client-IP/Response-IP/NSDNAME/NSIP rules differs from the base's, or
        a wildcard new against the base has other owners below its parent.
        """
        raw = base.base
        if zone.name != raw.name:
            raise OverlayUnsupportedError(f"zone {zone.name} is not the compiled zone {raw.name}")
        if len(zone.other) != raw.rule_count - raw.exact_count - raw.wild_count:
            raise OverlayUnsupportedError(
                f"zone {zone.name}: Client-IP/Response-IP/NSDNAME/NSIP rules changed: recompile"
            )
        prev = base.overlay
        exact = dict(prev.exact) if prev else {}
        wild = dict(prev.wild) if prev else {}
        complex_ = dict(prev.complex) if prev else {}
        code_base = raw.complex_limit
        next_code = max(complex_, default=code_base - 1) + 1
        origin = dns.name.from_text(zone.name)
        keys = list(keys)
        for key, wildcard in keys:
            code = (zone.wild if wildcard else zone.exact).get(key)
            table = wild if wildcard else exact
            before = raw.wild_get(key) if wildcard else raw.exact_get(key)
            if code is None:
                if before is None:
                    table.pop(key, None)
                else:
                    table[key] = DELETED
            elif code >= COMPLEX_BASE:
                complex_[next_code] = codec.encode_rule(zone.complex[code - COMPLEX_BASE], origin)
                table[key] = next_code
                next_code += 1
            elif code == before:
                table.pop(key, None)  # back to what the base says
            else:
                table[key] = code
        used = {c for c in (*exact.values(), *wild.values()) if c >= COMPLEX_BASE}
        # Every owner changed since the base (these keys and the view's): the names they
        # are or lie below may have become, or stopped being, empty non-terminals.
        changed = set(keys) | (prev.keys() if prev else set())
        ents = _empty_nonterminals(zone, raw, changed)
        soa = codec.encode_record(zone.soa, origin) if zone.soa is not None else None
        return cls(
            raw.crc,
            code_base,
            exact,
            wild,
            {c: t for c, t in complex_.items() if c in used},
            zone.serial,
            soa,
            tuple(codec.encode_record(r, origin) for r in zone.apex_ns),
            zone.simple_ttl,
            sum((v != DELETED) - (raw.exact_get(k) is not None) for k, v in exact.items()),
            sum((v != DELETED) - (raw.wild_get(k) is not None) for k, v in wild.items()),
            ents,
        )

    def to_bytes(self) -> bytes:
        """The overlay as bytes (marshal) to ship to worker processes."""
        return marshal.dumps(
            (
                _TAG,
                OVERLAY_FORMAT,
                self.base_crc,
                self.code_base,
                self.exact,
                self.wild,
                self.complex,
                self.serial,
                self.soa,
                self.apex_ns,
                self.simple_ttl,
                self.exact_delta,
                self.wild_delta,
                self.empty_nonterminals,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ZoneOverlay:
        """The overlay of ``to_bytes``; CompiledZoneError if *data* is not one."""
        try:
            t = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as e:
            raise CompiledZoneError(f"not a zone overlay: {e}") from None
        if not isinstance(t, tuple) or len(t) != 14 or t[0] != _TAG:
            raise CompiledZoneError("not a zone overlay")
        if t[1] != OVERLAY_FORMAT:
            raise CompiledZoneError(
                f"zone overlay format {t[1]}, this mamori reads {OVERLAY_FORMAT}"
            )
        return cls(*t[2:])


def _empty_nonterminals(
    zone: LoadedZone, base: Compiled, changed: set[tuple[bytes, bool]]
) -> dict[bytes, int]:
    """The empty non-terminal entries of an overlay: among the names *changed* owners
    ((wire key, wildcard?)) are or lie below, those that should be in the table
    (compiler._empty_nonterminals: one label below a wildcard's parent) and that
    *base* (plain compilation) lacks (value 0), and DELETED for those base has
    and should not.

    A wildcard new against the base whose parent has other owners below it
    would need its parent's children listed: OverlayUnsupportedError (recompile).
    So does a new wildcard at the apex (``*``), whose parent's owners ``zone.below``
    does not count (the apex is not counted): always recompiled.
    An entry whose parent stopped being a wildcard's may stay: it is never probed.
    """
    if zone.below is None:  # changed without delta.commit_steps: count now
        run(count_below_steps(zone))
    below = zone.below
    assert below is not None
    names: set[bytes] = set()
    for key, wildcard in changed:
        new_wildcard = wildcard and key in zone.wild and base.wild_get(key) is None
        # more than "*.key" itself below key; the apex ("*", key b"\x00") is not counted
        if new_wildcard and (key == b"\x00" or (below.get(key) or 0) > 1):
            raise OverlayUnsupportedError(
                f"zone {zone.name}: a wildcard added above existing names: recompile"
            )
        if key[0]:  # the owner itself (its exact rule came or went), or the parent of "*.key"
            names.add(key)
        names.update(proper_ancestors(key))
    out: dict[bytes, int] = {}
    for name in names:
        want = zone.is_empty_nonterminal(name) and name[name[0] + 1 :] in zone.wild
        if want != (base.empty_nonterminal_get(name) is not None):
            out[name] = 0 if want else DELETED
    return out


def changed_keys(plan: Plan) -> list[tuple[bytes, bool]]:
    """(wire key, wildcard?) of the QNAME owners a planned delta touches.

    Raises OverlayUnsupportedError when it touches another trigger kind: the
    caller recompiles the zone instead of shipping an overlay.
    """
    out = []
    for probe, _new, _net in plan.owners:
        if probe.trigger is not Trigger.QNAME:
            raise OverlayUnsupportedError(
                f"{probe.owner}: a {probe.trigger.label} rule changed: recompile the zone"
            )
        out.append((probe.match_key, probe.wildcard))
    return out
