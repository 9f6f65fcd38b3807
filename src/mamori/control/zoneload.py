"""Policy zones from their files: loading, settings, and freeing big ones gently.

A zone file is RFC 1035 text (policy/zone.py, policy/fastload.py); a zone
transferred from a primary also replays its IXFR journal (xfr/zonefile.py).
Zones whose file does not exist yet (a transfer or a feed not done yet) load
empty. ``load_policy`` builds a whole policy in one go (``mamori check``,
tests, benchmarks); the service compiles zones instead (policy.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator

from mamori.config import RpzConfig
from mamori.errors import StartupError
from mamori.policy import delta
from mamori.policy import zone as zone_mod
from mamori.policy.engine import Policy, ZoneSettings
from mamori.policy.rules import LoadedZone, ZoneError
from mamori.policy.steps import run
from mamori.steps import drive
from mamori.xfr import zonefile

log = logging.getLogger("mamori.rpz")


def zone_settings(rpz: RpzConfig) -> ZoneSettings:
    """The engine's view of an ``[[rpz]]`` table."""
    return ZoneSettings(
        rpz.name,
        rpz.policy,
        rpz.log,
        rpz.max_policy_ttl,
        rpz.recursive_only,
        rpz.nsdname_enable,
        rpz.nsip_enable,
        rpz.groups,
    )


def load_zone_steps(rpz: RpzConfig) -> Generator[None, None, LoadedZone]:
    """One zone from its file; a transferred zone also replays its IXFR journal.

    Raises ZoneError (file:line: reason). A transferred or feed zone with no
    copy on disk yet loads empty (no rules, no SOA) until its first transfer.
    """
    assert rpz.file is not None
    if (rpz.primary or rpz.feed or rpz.managed) and not rpz.file.exists():
        return LoadedZone(rpz.name)  # not transferred / not compiled yet
    z = yield from zone_mod.load_steps(rpz.file, rpz.name, rpz.on_error)
    if rpz.primary:
        for d in zonefile.read_journal(rpz.file):
            if d.old == z.serial:
                try:
                    plan = yield from delta.plan_steps(z, d.deleted, d.added)
                    yield from delta.commit_steps(z, plan)
                except ValueError as e:
                    raise ZoneError(f"{rpz.file}.jnl: serial {d.old} -> {d.new}: {e}") from e
            yield
    return z


def load_zone(rpz: RpzConfig) -> LoadedZone:
    """``load_zone_steps`` in one go; logs what was loaded (and skipped)."""
    t0 = time.monotonic()
    z = run(load_zone_steps(rpz))
    report(rpz, z, time.monotonic() - t0)
    return z


async def load_zone_async(rpz: RpzConfig) -> LoadedZone:
    """``load_zone_steps`` on the event loop (queries keep flowing between steps)."""
    t0 = time.monotonic()
    z: LoadedZone = await drive(load_zone_steps(rpz), f"zone {rpz.name} load")
    report(rpz, z, time.monotonic() - t0)
    return z


def report(rpz: RpzConfig, z: LoadedZone, took: float) -> None:
    for reason in z.skipped:
        log.warning("policy zone %s: skipped bad record: %s", rpz.name, reason)
    log.info(
        "policy zone %s serial %d: %d rules loaded in %.2fs", rpz.name, z.serial, z.rule_count, took
    )


def load_policy(
    zones: tuple[RpzConfig, ...], version: int = 1
) -> tuple[Policy | None, dict[str, LoadedZone]]:
    """Every zone loaded and compiled in memory, in one go: the policy of the applied
    zones (None when no zone is configured) and every loaded zone by name.

    Raises StartupError naming the zone when one cannot be loaded.
    """
    loaded: dict[str, LoadedZone] = {}
    for rpz in zones:
        try:
            loaded[rpz.name] = load_zone(rpz)
        except ZoneError as e:
            raise StartupError(f"policy zone {rpz.name} refused: {e}") from e
    applied = [rpz for rpz in zones if rpz.apply]
    if not zones:
        return None, loaded
    policy = Policy.from_loaded(
        [loaded[r.name] for r in applied], [zone_settings(r) for r in applied], version
    )
    return policy, loaded
