"""Secondary for policy zones: keep a transferred zone current (RFC 1034/1995/1996).

One ``Subscription`` per ``[[rpz]]`` zone with ``primary``. It checks the
primary's SOA serial every *refresh* seconds (from the zone's SOA, or at once
on a NOTIFY from a primary), transfers by IXFR from the serial it holds (AXFR
the first time, or when IXFR fails), and hands the result to its host:

* AXFR: the zone is written to its file, loaded beside the running one (step
  by step on the loop) and swapped in whole;
* IXFR: the differences are applied to the running zone in place, appended
  to the file's journal, and a new policy version is published.

A failed attempt keeps the running version and is retried after *retry*; once
*expire* passes without a successful check the zone stops being applied
(``on_expire = "stop"``, the default) until a transfer succeeds again.
Status (serial, rules, last transfer and its result, next refresh) is logged
and written to ``FILE.status.json`` for ``mamori zones status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import dns.name

from mamori.atomicfile import write_atomic
from mamori.config import Endpoint, RpzConfig
from mamori.dnsutil import serial as rfc1982
from mamori.policy.rules import LoadedZone
from mamori.steps import drive
from mamori.xfr import client, zonefile

log = logging.getLogger(__name__)

FIRST_RETRY = 5.0  # seconds between attempts while nothing has been loaded yet
MIN_TIMER = 1.0
MAX_TIMER = 86_400.0


class ZoneHost(Protocol):
    """What a subscription needs from the running service."""

    def zone(self, name: str) -> LoadedZone | None:
        """The zone as the running policy holds it (None: not loaded)."""

    async def load_file(self, rpz: RpzConfig) -> LoadedZone:
        """Load the zone's file (after an AXFR wrote it), step by step."""

    def publish(
        self, name: str, zone: LoadedZone | None, deltas: list[client.Delta] | None = None
    ) -> None:
        """Swap in a new policy version with *zone* (None: stop applying the zone)."""


@dataclass
class ZoneStatus:
    zone: str
    primaries: list[str]
    serial: int | None = None
    rules: int = 0
    loaded: bool = False
    expired: bool = False
    last_check: float | None = None
    last_success: float | None = None
    last_transfer: float | None = None
    last_result: str = "not checked yet"
    next_refresh: float | None = None


def status_path(file: Path) -> Path:
    return file.with_name(file.name + ".status.json")


class Subscription:
    def __init__(self, rpz: RpzConfig, host: ZoneHost) -> None:
        assert rpz.file is not None and rpz.primary
        self.rpz = rpz
        self.host = host
        self.origin = dns.name.from_text(rpz.name)
        self.notified = asyncio.Event()
        self.status = ZoneStatus(rpz.name, [str(p) for p in rpz.primary])
        self._task: asyncio.Task[None] | None = None
        self._parked: LoadedZone | None = None  # the data of an expired zone

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        z = self.host.zone(self.rpz.name)
        if z is not None and z.soa is not None:
            self.status.serial, self.status.rules, self.status.loaded = z.serial, z.rule_count, True
            self.status.last_success = _mtime(self.rpz.file)  # the copy on disk counts
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def park(self, zone: LoadedZone) -> None:
        """Hold the data of an expired zone (the host stops applying it)."""
        self._parked = zone

    def notify(self, source: str) -> bool:
        """A NOTIFY for this zone from *source*: accepted from a primary only."""
        if source not in {p.host for p in self.rpz.primary}:
            return False
        log.info("zone %s: NOTIFY from %s, checking now", self.rpz.name, source)
        self.notified.set()
        return True

    # ----------------------------------------------------------------- timers
    def _timers(self) -> tuple[float, float, float]:
        z = self.host.zone(self.rpz.name) or self._parked
        if z is None or z.soa is None:
            return FIRST_RETRY, FIRST_RETRY, float("inf")
        soa = z.soa.rdata
        return (
            _clamp(soa.refresh),  # type: ignore[attr-defined]
            _clamp(soa.retry),  # type: ignore[attr-defined]
            float(soa.expire),  # type: ignore[attr-defined]
        )

    async def _run(self) -> None:
        delay = 0.0  # check at once on start
        while True:
            self.status.next_refresh = time.time() + delay
            self._write_status()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.notified.wait(), timeout=delay)
            self.notified.clear()
            refresh, retry, expire = self._timers()
            ok = await self._check()
            if ok:
                delay = refresh
            else:
                delay = retry
                self._maybe_expire(expire)
            delay *= random.uniform(0.9, 1.0)  # spread a fleet's checks

    def _maybe_expire(self, expire: float) -> None:
        last = self.status.last_success
        if last is None or time.time() - last < expire or self.status.expired:
            return
        self.status.expired = True
        if self.rpz.on_expire == "stop":
            self._parked = self.host.zone(self.rpz.name)
            self.host.publish(self.rpz.name, None)
            log.error(
                "zone %s expired (no successful check for %ds): not applied until a"
                " transfer succeeds",
                self.rpz.name,
                int(expire),
            )
        else:
            log.error("zone %s expired; still applied (on_expire = keep)", self.rpz.name)

    # ---------------------------------------------------------------- checks
    async def _check(self) -> bool:
        self.status.last_check = time.time()
        errors = []
        for primary in self.rpz.primary:
            try:
                result = await self._check_one(primary)
            except client.TransferError as e:
                errors.append(str(e))
                continue
            except Exception as e:  # a bug costs this attempt, never the service
                log.exception("zone %s: transfer from %s failed", self.rpz.name, primary)
                errors.append(f"{primary}: {e}")
                continue
            now = time.time()
            self.status.last_success = now
            self.status.last_result = result
            if self.status.expired:
                self.status.expired = False
                log.info("zone %s: no longer expired", self.rpz.name)
            z = self.host.zone(self.rpz.name)
            if z is not None:
                self.status.serial, self.status.rules, self.status.loaded = (
                    z.serial,
                    z.rule_count,
                    True,
                )
            return True
        self.status.last_result = "failed: " + "; ".join(errors)
        log.error("zone %s: refresh failed, previous version serving: %s", self.rpz.name, errors)
        return False

    async def _check_one(self, primary: Endpoint) -> str:
        z = self.host.zone(self.rpz.name) if not self.status.expired else self._parked
        held = z.serial if z is not None and z.soa is not None else None
        serial = await client.soa_serial(primary, self.origin, self.rpz.tsig)
        if held is not None and not rfc1982.gt(serial, held):  # RFC 1982 order, as BIND
            if self.status.expired and z is not None:
                self.host.publish(self.rpz.name, z)  # the primary vouches for our copy again
                self._parked = None
            return f"up to date at serial {held} ({primary})"
        result = await client.transfer(primary, self.origin, held, self.rpz.tsig, self._spool())
        if result is None:
            return f"up to date at serial {held} ({primary})"
        if isinstance(result, client.Incremental) and z is not None:
            try:
                await self._apply_ixfr(z, result)
            except Exception as e:  # the zone is reloaded from disk, then AXFR
                log.error(
                    "zone %s: IXFR could not be applied (%s); full transfer", self.rpz.name, e
                )
                await self._reload_from_disk()
                result = await client.transfer(
                    primary, self.origin, None, self.rpz.tsig, self._spool()
                )
                assert result is not None
            else:
                self.status.last_transfer = time.time()
                changes = sum(len(d.deleted) + len(d.added) - 2 for d in result.deltas)
                log.info(
                    "zone %s: IXFR from %s: serial %d -> %d, %d changes",
                    self.rpz.name,
                    primary,
                    held,
                    result.serial,
                    changes,
                )
                return f"IXFR serial {held} -> {result.serial} ({changes} changes, {primary})"
        if isinstance(result, client.Incremental):
            result = await client.transfer(primary, self.origin, None, self.rpz.tsig, self._spool())
            assert isinstance(result, client.FullZone)
        assert isinstance(result, client.FullZone)
        await self._apply_axfr(result)
        self.status.last_transfer = time.time()
        log.info(
            "zone %s: AXFR from %s: serial %d, %d records",
            self.rpz.name,
            primary,
            result.serial,
            result.count,
        )
        return f"AXFR serial {result.serial} ({result.count} records, {primary})"

    async def _apply_ixfr(self, zone: LoadedZone, inc: client.Incremental) -> None:
        """Plan and apply each delta step by step (queries flow), then publish."""
        from mamori.policy import delta

        if inc.deltas[0].old != zone.serial:
            raise client.TransferError(
                f"IXFR starts at serial {inc.deltas[0].old}, we hold {zone.serial}"
            )
        for d in inc.deltas:
            plan = await drive(delta.plan_steps(zone, d.deleted, d.added), "IXFR plan")
            await drive(delta.commit_steps(zone, plan), "IXFR commit")
        assert self.rpz.file is not None
        self.host.publish(self.rpz.name, zone, inc.deltas)
        self._parked = None
        # Rendering and syncing 10k journal lines takes ~60 ms: not on the loop.
        await asyncio.to_thread(zonefile.append_journal, self.rpz.file, inc.deltas)

    def _spool(self) -> Path:
        assert self.rpz.file is not None
        return self.rpz.file.with_name(self.rpz.file.name + ".xfr")

    async def _apply_axfr(self, full: client.FullZone) -> None:
        assert self.rpz.file is not None
        zonefile.install(full.path, self.rpz.file)
        zone = await self.host.load_file(self.rpz)
        self._parked = None
        self.host.publish(self.rpz.name, zone)

    async def _reload_from_disk(self) -> None:
        zone = await self.host.load_file(self.rpz)
        self.host.publish(self.rpz.name, zone)

    def _write_status(self) -> None:
        assert self.rpz.file is not None
        path = status_path(self.rpz.file)
        try:
            write_atomic(path, json.dumps(asdict(self.status), indent=1))
        except OSError as e:
            log.warning("zone %s: cannot write status file %s: %s", self.rpz.name, path, e)


def _clamp(v: float) -> float:
    return min(max(float(v), MIN_TIMER), MAX_TIMER)


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime if path is not None else None
    except OSError:
        return None
