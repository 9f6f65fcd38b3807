"""``[nod]``: newly observed domains (discovery/nod.py), its value type and converters.

A registrable domain first seen in passive DNS within ``window`` seconds is new;
it is published as the policy zone ``zone`` (applied after every other zone) with
``action`` (``log``: hits logged, nothing applied; ``block``: NXDOMAIN; ``warn``:
the block page's address, whose page lets the user continue), and, when
``dnsbl_zone`` is set, as a DNSBL on ``dnsbl_listen`` (return code by age).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mamori.config.values import (
    Endpoint,
    boolean,
    choice,
    duration,
    endpoints,
    float_range,
    int_range,
    zone_name,
)

NOD_ACTIONS = ("log", "block", "warn")


@dataclass(frozen=True)
class NodConfig:
    """``[nod]``: durations in seconds (``window``, ``warmup``, ``continue_for``,
    ``refresh``); ``dnsbl_ttl`` in seconds; the zones lowercase with the trailing dot."""

    enabled: bool = False
    window: int = 86_400  # seconds: first seen less than this long ago = new
    action: str = "log"  # log | block | warn
    zone: str = "nod.mamori."
    warmup: int | None = None  # seconds the store must observe first; None: window
    refresh: float = 60.0  # seconds between recomputations while serving
    continue_for: int = 8 * 3600  # seconds a name stays allowed after "continue" (warn)
    dnsbl_zone: str = ""  # e.g. "nod.bl.example."; "" = no DNSBL
    dnsbl_listen: tuple[Endpoint, ...] = ()
    dnsbl_ttl: int = 300

    @property
    def warmup_seconds(self) -> int:
        """The warm-up in seconds (``window`` when not given)."""
        return self.window if self.warmup is None else self.warmup


CONVERTERS: dict[tuple[str, str], Any] = {
    ("nod", "enabled"): boolean,
    ("nod", "window"): duration(60, 30 * 86_400),
    ("nod", "action"): choice(*NOD_ACTIONS),
    ("nod", "zone"): zone_name,
    ("nod", "warmup"): duration(0, 365 * 86_400),
    ("nod", "refresh"): float_range(0.1, 86_400),
    ("nod", "continue_for"): duration(60, 30 * 86_400),
    ("nod", "dnsbl_zone"): zone_name,
    ("nod", "dnsbl_listen"): endpoints,
    ("nod", "dnsbl_ttl"): int_range(0, 86_400),
}
