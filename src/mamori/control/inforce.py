"""The policy zones in force, compiled, for readers outside the service's policy
manager (``mamori feeds preview``, the console's preview under ``mamori web``)."""

from __future__ import annotations

import logging
import mmap

from mamori.config import Config
from mamori.control.compiler import PolicyFiles, source_of
from mamori.control.zoneload import load_zone, zone_settings
from mamori.policy.compiled import CompiledZone, compile_zone
from mamori.policy.engine import ZoneSettings
from mamori.policy.rules import ZoneError

log = logging.getLogger("mamori.rpz")


def zones_in_force(cfg: Config) -> list[tuple[CompiledZone, ZoneSettings]]:
    """The applied policy zones, in order, compiled: the service's compiled file when it
    was made from the zone's current source (mapped), else loaded and compiled here.
    Zones that cannot be loaded are left out (the service does not apply them either)."""
    files = PolicyFiles(cfg.store.path.parent / "policy")
    out: list[tuple[CompiledZone, ZoneSettings]] = []
    for rpz in cfg.rpz:
        if not rpz.apply or rpz.file is None:
            continue
        path = None if rpz.primary else files.reusable(rpz.name, source_of(rpz))
        try:
            if path is not None:
                with open(path, "rb") as f:
                    zone = CompiledZone(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            else:
                zone = CompiledZone(compile_zone(load_zone(rpz)))
        except (ZoneError, OSError, ValueError) as e:
            log.warning("policy zone %s left out: %s", rpz.name, e)
            continue
        out.append((zone, zone_settings(rpz)))
    return out
