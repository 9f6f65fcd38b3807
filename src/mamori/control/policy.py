"""The control plane's policy: configured zones -> compiled files -> versions for the data planes.

One ``ZoneSlot`` per ``[[rpz]]`` zone (local files, transfers, feeds,
datasets), in configured order. Each applied zone has a compiled file
(compiler.py), mapped read-only by every process that evaluates policy; a
*version* is the list of those files (plus, for a zone an IXFR changed in
place, an overlay of the changed names) with the zones' settings, numbered.
Every change (a zone file edited, SIGHUP, a transfer, a feed update) makes a
new version, built whole beside the serving one and handed to the listeners
(the data planes) at once; a zone that fails to load or compile keeps its
previous compiled file serving.

The control plane also holds some zones in memory (``LoadedZone``): those it
transfers from a primary (IXFR deltas are applied to them) and those it
publishes (AXFR/IXFR out need their records). It is the ``ZoneHost`` of the
secondaries (xfr/secondary.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import dns.name

from mamori.config import Config, RpzConfig
from mamori.control.compiler import PolicyFiles, compile_file, compile_loaded, source_of
from mamori.control.view import ZoneInfo
from mamori.control.zoneload import load_zone_async, zone_settings
from mamori.errors import StartupError
from mamori.policy.compiled import OverlayUnsupportedError, ZoneOverlay
from mamori.policy.engine import Policy
from mamori.policy.rules import IP_SUFFIX, LoadedZone, ZoneError, free_steps
from mamori.resolver.policymap import Manifest, PolicyMapError, PolicyMapper, ZoneRef
from mamori.steps import drive
from mamori.xfr.client import Delta

log = logging.getLogger("mamori.rpz")

MAX_OVERLAY = 50_000  # names changed in place before the zone is compiled again whole
# A compiled file no version names any more is deleted after this long: a worker starting
# (or slow to apply) may still be mapping the version that named it.
RETIRED_GRACE = 120.0
_TRIGGER_LABELS = {*IP_SUFFIX, "rpz-nsdname"}

VersionListener = Callable[[Manifest, Policy | None], None]


class ZoneSlot:
    """One configured zone as the control plane holds it."""

    def __init__(self, rpz: RpzConfig) -> None:
        self.rpz = rpz
        self.path: str | None = None  # the compiled base file
        self.source = ""  # what it was compiled from (compiler.source_of)
        self.overlay: ZoneOverlay | None = None  # names changed in place since
        self.overlay_bytes: bytes | None = None
        self.loaded: LoadedZone | None = None  # held in memory (transferred/published)
        self.loaded_source = ""  # what *loaded* was read from
        self.expired = False  # a transferred zone past its expiry: not applied
        self.serial = 0
        self.rules = 0
        self.has_soa = False

    @property
    def keeps_loaded(self) -> bool:
        """Does the control plane need this zone's records in memory?"""
        return bool(self.rpz.primary) or self.rpz.publish

    def ref(self) -> ZoneRef | None:
        if not self.rpz.apply or self.expired or self.path is None:
            return None
        return ZoneRef(zone_settings(self.rpz), self.path, self.overlay_bytes)


class PolicyManager:
    """Zones, their compiled files and the numbered versions made of them."""

    def __init__(self, cfg: Config, evaluate: bool = True) -> None:
        """*evaluate* False (``mamori zones serve``): zones are only held for publishing,
        nothing is compiled."""
        self.cfg = cfg
        self.evaluate = evaluate
        self.files = PolicyFiles(cfg.store.path.parent / "policy")
        self.mapper = PolicyMapper()
        self.slots: dict[str, ZoneSlot] = {rpz.name: ZoneSlot(rpz) for rpz in cfg.rpz}
        self.version = 0
        self.manifest = Manifest(0, ())
        self.policy: Policy | None = None
        self.listeners: list[VersionListener] = []
        # the publisher: called with the published zones' LoadedZones when one changed
        self.zone_listeners: list[Callable[[list[LoadedZone]], None]] = []
        self.on_deltas: Callable[[str, list[Delta]], None] | None = None
        self._lock = asyncio.Lock()  # one change at a time, in the order they came
        self._in_use: set[str] = set()  # compiled files the current version names
        self._retired: dict[str, float] = {}  # file -> when no version named it any more
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        """Map (or compile) every applied zone; StartupError names a zone that fails.

        Compiled files whose source did not change since they were made are
        mapped without reading the zone files (the fast start).
        """
        async with self._lock:
            for slot in self.slots.values():
                if slot.rpz.apply:
                    await self._compile(slot, strict=True)
            self._new_version("start")

    async def load_sources(self) -> None:
        """Load the zones the control plane holds in memory (after serving began), and
        hand the published ones to the publisher."""
        for slot in list(self.slots.values()):
            if slot.keeps_loaded and slot.loaded is None:
                try:
                    await self._load(slot)
                except ZoneError as e:
                    log.error("policy zone %s: cannot load its records: %s", slot.rpz.name, e)
                    slot.loaded = LoadedZone(slot.rpz.name)
        gc.freeze()  # big, long-lived indexes: out of the way of full GC passes
        self._tell_publisher()

    # ---------------------------------------------------------------- changes
    async def reload(self, cfg: Config) -> None:
        """A new configuration, or zone files changed: compile what changed, new version."""
        async with self._lock:
            old = self.slots
            before = {name: s.loaded for name, s in old.items() if s.rpz.publish}
            self.cfg = cfg
            self.slots = {}
            for rpz in cfg.rpz:
                slot = old.get(rpz.name)
                if slot is None or slot.rpz != rpz:
                    fresh = ZoneSlot(rpz)
                    if slot is not None and slot.rpz.primary and rpz.primary:
                        fresh.expired = slot.expired  # an expired zone stays off
                    slot = fresh
                self.slots[rpz.name] = slot
                if rpz.primary and slot.path is not None:
                    continue  # transferred zones change by transfer, not by file
                if self.evaluate and rpz.apply and slot.source != source_of(rpz):
                    await self._compile(slot, strict=False)
                reread = slot.loaded is None or slot.loaded_source != source_of(rpz)
                if slot.keeps_loaded and not rpz.primary and reread:
                    try:
                        await self._load(slot)
                    except ZoneError as e:
                        log.error("policy zone %s reload refused, previous version serving: %s",
                                  rpz.name, e)  # fmt: skip
            for name, slot in old.items():
                if name not in self.slots and slot.loaded is not None and not slot.rpz.publish:
                    self._spawn(drive(free_steps(slot.loaded), f"zone {name} free"))
            self._new_version("reload")
            after = {name: s.loaded for name, s in self.slots.items() if s.rpz.publish}
            if after.keys() != before.keys() or any(after[n] is not before[n] for n in after):
                self._tell_publisher()

    def files_changed(self) -> list[str]:
        """Compiled files of the current version changed on disk since they were made
        (one stat each; see ``repair``)."""
        return [p for s in self.slots.values() if (p := s.path) and self.files.changed(p)]

    async def repair(self, why: str) -> bool:
        """Compile again every applied zone whose compiled file is missing or damaged (a
        worker could not map it, or it changed on disk), and make a new version if any
        was. Whether one was made."""
        async with self._lock:
            bad = []
            for slot in self.slots.values():
                if slot.path is not None:
                    problem = await asyncio.to_thread(self.files.intact, slot.path)
                    if problem is not None:
                        bad.append((slot, problem))
            for slot, problem in bad:
                log.error("policy zone %s: compiled file %s unusable (%s; %s): compiling again",
                          slot.rpz.name, slot.path, problem, why)  # fmt: skip
                self.files.forget(slot.rpz.name)
                if slot.loaded is not None and slot.source:
                    path = await compile_loaded(self.files, slot.loaded, slot.source)
                    self._set_base(slot, path, slot.source)
                else:
                    slot.source = ""
                    await self._compile(slot, strict=False)
            if bad:
                self._new_version("repair")
            return bool(bad)

    async def _compile(self, slot: ZoneSlot, strict: bool) -> None:
        """Give *slot* a compiled file for its current source (reused when unchanged)."""
        rpz = slot.rpz
        assert rpz.file is not None
        source = source_of(rpz)
        reused = self.files.reusable(rpz.name, source)
        if reused is not None:
            slot.path, slot.source, slot.overlay, slot.overlay_bytes = reused, source, None, None
            self._describe(slot)
            log.info("policy zone %s: compiled form of %s reused", rpz.name, rpz.file)
            return
        t0 = time.monotonic()
        if not rpz.file.exists() and (rpz.primary or rpz.feed or rpz.managed):
            path = await compile_loaded(self.files, LoadedZone(rpz.name), source)
            self._set_base(slot, path, source)
            return
        if slot.keeps_loaded:
            try:
                zone = await self._load(slot)
            except ZoneError as e:
                self._refused(slot, str(e), strict)
                return
            path = await compile_loaded(self.files, zone, source)
            self._set_base(slot, path, source)
        else:
            verdict = await compile_file(self.files, rpz, source)
            if not verdict["ok"]:
                self._refused(slot, str(verdict["error"]), strict)
                return
            for reason in verdict.get("skipped", []):
                log.warning("policy zone %s: skipped bad record: %s", rpz.name, reason)
            self._set_base(slot, str(verdict["file"]), source)
        log.info(
            "policy zone %s serial %d: %d rules loaded in %.2fs",
            rpz.name, slot.serial, slot.rules, time.monotonic() - t0,
        )  # fmt: skip

    async def _load(self, slot: ZoneSlot) -> LoadedZone:
        """Read *slot*'s zone into memory (ZoneError when it cannot be)."""
        source = source_of(slot.rpz)
        zone = await load_zone_async(slot.rpz)
        slot.loaded, slot.loaded_source = zone, source
        return zone

    def _refused(self, slot: ZoneSlot, error: str, strict: bool) -> None:
        name = slot.rpz.name
        if strict:
            raise StartupError(f"policy zone {name} refused: {error}")
        if slot.path is None:
            log.error("policy zone %s refused, not applied: %s", name, error)
        else:
            log.error("policy zone %s reload refused, previous version serving: %s", name, error)

    def _set_base(self, slot: ZoneSlot, path: str, source: str) -> None:
        slot.path, slot.source, slot.overlay, slot.overlay_bytes = path, source, None, None
        self.files.record(slot.rpz.name, path, source)
        self._describe(slot)

    def _describe(self, slot: ZoneSlot) -> None:
        assert slot.path is not None
        z = self.mapper.zone(slot.path)
        if slot.overlay is not None:
            z = z.with_overlay(slot.overlay)
        slot.serial, slot.rules, slot.has_soa = z.serial, z.rule_count, z.soa is not None

    def _new_version(self, why: str) -> None:
        """Number and hand out the version of the slots as they are now."""
        if not self.evaluate:
            return
        refs = [r for s in self.slots.values() if (r := s.ref()) is not None]
        manifest = Manifest(self.version + 1, tuple(refs))
        try:
            policy = self.mapper.build(manifest) if refs else None
        except PolicyMapError as e:  # a compiled file vanished: keep what serves
            log.error("policy version not built (%s): %s", why, e)
            return
        self.version = manifest.version
        self.manifest, self.policy = manifest, policy
        self._prune({r.path for r in refs} | self._held_paths())
        log.debug("policy version %d (%s): %d zones", self.version, why, len(refs))
        for listener in self.listeners:
            listener(manifest, policy)

    def _prune(self, current: set[str]) -> None:
        """Delete compiled files no version has named for RETIRED_GRACE seconds."""
        now = time.monotonic()
        for path in self._in_use - current:
            self._retired.setdefault(path, now)
        self._in_use = current
        for path in current:
            self._retired.pop(path, None)
        recent = {p for p, since in self._retired.items() if now - since < RETIRED_GRACE}
        self._retired = {p: t for p, t in self._retired.items() if p in recent}
        self.files.prune(current | recent)

    def _held_paths(self) -> set[str]:
        return {s.path for s in self.slots.values() if s.path is not None}

    def _tell_publisher(self) -> None:
        zones = [
            s.loaded
            for s in self.slots.values()
            if s.rpz.publish and s.loaded is not None and not s.expired
        ]
        for listener in self.zone_listeners:
            listener(zones)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------ ZoneHost (secondary)
    def zone(self, name: str) -> LoadedZone | None:
        """The records of a zone the secondary holds (None: none yet, or expired)."""
        slot = self.slots.get(name)
        if slot is None or slot.expired or slot.loaded is None or slot.loaded.soa is None:
            return None
        return slot.loaded

    async def load_file(self, rpz: RpzConfig) -> LoadedZone:
        return await load_zone_async(rpz)

    def publish(
        self, name: str, zone: LoadedZone | None, deltas: list[Delta] | None = None
    ) -> None:
        """A transfer changed *name*: *zone* replaces it (None: expired, stop applying it).

        *deltas*: the IXFR differences just applied to *zone* in place.
        """
        slot = self.slots.get(name)
        if slot is None:
            return
        if deltas and self.on_deltas is not None and slot.rpz.publish:
            self.on_deltas(name, deltas)
        previous = slot.loaded
        if zone is None:
            slot.expired = True
        else:
            slot.expired = False
            slot.loaded = zone
        self._spawn(self._transferred(slot, zone, previous, deltas))

    async def _transferred(
        self,
        slot: ZoneSlot,
        zone: LoadedZone | None,
        previous: LoadedZone | None,
        deltas: list[Delta] | None,
    ) -> None:
        async with self._lock:
            if self.slots.get(slot.rpz.name) is not slot:
                return  # reconfigured meanwhile
            in_place = bool(deltas) and zone is previous
            if (
                zone is not None
                and slot.rpz.apply
                and self.evaluate
                and not (in_place and deltas and self._overlay(slot, zone, deltas))
            ):
                source = source_of(slot.rpz)
                path = await compile_loaded(self.files, zone, source)
                self._set_base(slot, path, source)
            self._new_version(f"transfer of {slot.rpz.name}")
            if slot.rpz.publish:
                self._tell_publisher()
            if previous is not None and previous is not zone and not slot.rpz.publish:
                await drive(free_steps(previous), f"zone {slot.rpz.name} free")

    def _overlay(self, slot: ZoneSlot, zone: LoadedZone, deltas: list[Delta]) -> bool:
        """Fold an in-place change into the slot's overlay; False: compile it whole."""
        if slot.path is None:
            return False
        keys = changed_keys(slot.rpz.name, deltas)
        if keys is None:
            return False
        if slot.overlay is not None:
            keys |= slot.overlay.keys()
        if len(keys) > MAX_OVERLAY:
            return False
        try:
            overlay = ZoneOverlay.from_changes(zone, self.mapper.zone(slot.path), keys)
        except OverlayUnsupportedError:
            return False
        slot.overlay, slot.overlay_bytes = overlay, overlay.to_bytes()
        self._describe(slot)
        return True

    # ---------------------------------------------------------------- status
    def zone_infos(self) -> list[ZoneInfo]:
        """Every configured zone: serial, rules, applied or not (the console, /metrics)."""
        out = []
        for s in self.slots.values():
            serial, rules = s.serial, s.rules
            if s.path is None and s.loaded is not None:
                serial, rules = s.loaded.serial, s.loaded.rule_count
            applied = s.rpz.apply and not s.expired and s.path is not None
            out.append(ZoneInfo(s.rpz.name, serial, rules, applied, s.expired))
        return out


def changed_keys(zone_name: str, deltas: Iterable[Delta]) -> set[tuple[bytes, bool]] | None:
    """The QNAME index keys (wire name below any ``*``, wildcard?) an IXFR touched.

    None when it touched something an overlay cannot carry (IP or NS triggers).
    The apex (SOA serial, NS) is carried by the overlay's serial.
    """
    origin = dns.name.from_text(zone_name)
    keys: set[tuple[bytes, bool]] = set()
    for d in deltas:
        for owner, _rdtype, _rdata in (*d.deleted, *d.added):
            if owner == origin:
                continue
            if not owner.is_subdomain(origin):
                return None
            rel = owner.relativize(origin)
            labels = [lb.lower() for lb in rel.labels]
            if labels[-1].decode("ascii", "replace") in _TRIGGER_LABELS:
                return None
            wildcard = labels[0] == b"*"
            base = labels[1:] if wildcard else labels
            key = b"".join(bytes((len(lb),)) + lb for lb in base) + b"\x00"
            keys.add((key, wildcard))
    return keys
