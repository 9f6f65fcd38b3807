"""The data plane as the control plane's readers see it: counters summed over workers.

/metrics, the console and the alert rules read the running service through
``Runtime`` (one per ``mamori serve``); its figures come from each data
plane's latest ``Snapshot`` (resolver/dataplane.py): the in-process one read
live (``workers = 1``), or the ones the workers send every second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mamori.policy.groups import GroupClassifier
from mamori.resolver.dataplane import Snapshot
from mamori.resolver.upstream import LATENCY_BUCKETS, UpstreamHealth

if TYPE_CHECKING:
    from mamori.config import Config
    from mamori.control.subscriptions import Subscriptions
    from mamori.control.writer import EventWriter
    from mamori.policy.engine import Policy


@dataclass(frozen=True)
class WorkerInfo:
    """One data plane (a worker process, or the control plane's own loop: number 0).

    *state*: starting, running, backoff, stopped; *restarts*: since the service
    started; *started*: UNIX time of the current process; *policy_version*: in force.
    """

    number: int
    pid: int
    state: str
    restarts: int
    started: float
    backoff: float
    exit_status: str
    policy_version: int


@dataclass(frozen=True)
class ZoneInfo:
    """One configured policy zone as the control plane holds it (the console's policy page).

    *applied*: enforced (False: only published, or expired); *rules*: count.
    """

    name: str
    serial: int
    rules: int
    applied: bool
    expired: bool


class Runtime:
    """What the control plane's readers (web, alerts) may look at while the service runs."""

    def __init__(self) -> None:
        self.policy_source: Callable[[], Policy | None] = lambda: None
        self._groups: tuple[Config, GroupClassifier] | None = None  # classifier of a config
        self.snapshot_source: Callable[[], list[Snapshot]] = list
        self.worker_source: Callable[[], list[WorkerInfo]] = list
        self.dropped_source: Callable[[], tuple[int, int]] = lambda: (0, 0)
        # the local spools of batches waiting for ClickHouse, by store ("querylog",
        # "pdns"): objects with ``dropped`` (batches refused: the spool was full)
        self.spools: dict[str, Any] = {}
        self.writer: EventWriter | None = None
        self.subs: Subscriptions | None = None
        self.policy_version: Callable[[], int] = lambda: 0
        self.zone_source: Callable[[], list[ZoneInfo]] = list
        # called with (worker number, message) when a worker keeps dying (the alert rules)
        self.crash_listeners: list[Callable[[int, str], None]] = []
        # given to the query-log writer: called with each batch's policy hits (alert rules)
        self.hit_listeners: list[
            Callable[[list[tuple[float, str, str, str, str, str, str]]], None]
        ] = []
        # Actions (the console and the REST API), run on the service's event loop.
        # The configuration in force (after SIGHUP reloads); None: not serving.
        self.config_source: Callable[[], Config | None] = lambda: None
        # Read the configuration again, as SIGHUP does (a bad one is refused and logged).
        self.reload: Callable[[], Awaitable[None]] | None = None
        # Zone files changed on disk (e.g. local rules written): compile and distribute now.
        self.zones_changed: Callable[[], Awaitable[None]] | None = None
        # Update one [[feed]] now (by name): its verdict as ``mamori feeds update`` gives it.
        self.update_feed: Callable[[str], Awaitable[dict[str, Any]]] | None = None
        # A feed was removed (its data deleted): the scheduler forgets when it last ran.
        self.feed_removed: Callable[[str], None] | None = None
        # The lock an update of a feed holds while it runs (by name): its removal waits.
        self.feed_lock: Callable[[str], asyncio.Lock] | None = None
        # Run the brand watch now (a [[brand]] was added or changed from the console/API).
        self.brand_wake: Callable[[], None] | None = None

    @property
    def config(self) -> Config | None:
        """The configuration the service runs with now (None: not serving)."""
        return self.config_source()

    @property
    def policy(self) -> Policy | None:
        """The policy version in force (the control plane's own mapping of it)."""
        return self.policy_source()

    def groups_of(self, client: str) -> tuple[str, ...]:
        """The ``[[group]]``s the client address *client* is in (configured order)."""
        cfg = self.config
        if cfg is None or not cfg.groups:
            return ()
        if self._groups is None or self._groups[0] is not cfg:
            self._groups = (cfg, GroupClassifier((g.name, g.clients) for g in cfg.groups))
        return self._groups[1].groups_of(client)

    def policy_for(self, client: str | None) -> Policy | None:
        """The policy as the client *client* gets it (the view for its groups: zones
        without ``groups`` and those of its groups); None: the whole policy."""
        policy = self.policy
        if policy is None or client is None:
            return policy
        return policy.view(self.groups_of(client))

    def explain(self, name: str, client: str | None = None, qtype: int = 1) -> dict[str, Any]:
        """Which rule applies to *name* (asked with *qtype*) for *client*: {"groups": the
        client's groups, "zones": the zones applied to it in order, "zone", "rule",
        "action" ("" when none; "by query type" for a typed rule with no branch)}."""
        from mamori.dnsutil import wire

        groups = self.groups_of(client) if client else ()
        policy = self.policy_for(client)
        out: dict[str, Any] = {"groups": list(groups), "zones": [], "zone": "", "rule": "",
                               "action": ""}  # fmt: skip
        if policy is None:
            return out
        out["zones"] = [st.name for st in policy.settings]
        try:
            qname = wire.text_to_name(name).lower()
        except ValueError:
            return out
        match, _ = policy.check_query_typed(client, qname, qtype)
        if match is not None:
            out.update(zone=match.rule.zone, rule=match.rule.rule_name, action=match.hit[3])
        return out

    def snapshots(self) -> list[Snapshot]:
        return self.snapshot_source()

    def zones(self) -> list[ZoneInfo]:
        return self.zone_source()

    def workers(self) -> list[WorkerInfo]:
        return self.worker_source()

    def dropped(self) -> tuple[int, int]:
        """(query events, passive DNS answers) dropped since start, all stages summed."""
        return self.dropped_source()

    def stats(self) -> dict[str, int]:
        return sum_stats(self.snapshots())

    def upstreams(self) -> list[UpstreamHealth]:
        return merge_upstreams(self.snapshots())


def sum_stats(snaps: list[Snapshot]) -> dict[str, int]:
    """The pipelines' counters summed over data planes (cache figures included)."""
    out: dict[str, int] = {}
    for s in snaps:
        for k, v in s.stats.items():
            out[k] = out.get(k, 0) + v
        out["cache_entries"] = out.get("cache_entries", 0) + s.cache_entries
        out["cache_bytes"] = out.get("cache_bytes", 0) + s.cache_bytes
        out["cache_evictions"] = out.get("cache_evictions", 0) + s.cache_evictions
    return out


def merge_upstreams(snaps: list[Snapshot]) -> list[UpstreamHealth]:
    """Each upstream once: counts and histograms summed, up if every data plane says so,
    the smoothed RTT averaged over the data planes that measured it."""
    merged: dict[str, list[Any]] = {}
    for s in snaps:
        for u in s.upstreams:
            m = merged.get(u.name)
            if m is None:
                merged[u.name] = [u.up, [u.srtt] if u.srtt else [], u.queries, u.errors,
                                  u.tcp_fallbacks, list(u.latency), u.latency_sum]  # fmt: skip
                continue
            m[0] = m[0] and u.up
            if u.srtt:
                m[1].append(u.srtt)
            m[2] += u.queries
            m[3] += u.errors
            m[4] += u.tcp_fallbacks
            m[5] = [a + b for a, b in zip(m[5], u.latency, strict=True)]
            m[6] += u.latency_sum
    return [
        UpstreamHealth(
            name, m[0], sum(m[1]) / len(m[1]) if m[1] else 0.0, m[2], m[3], m[4], tuple(m[5]), m[6]
        )
        for name, m in merged.items()
    ]


__all__ = ["LATENCY_BUCKETS", "Runtime", "WorkerInfo", "ZoneInfo", "merge_upstreams", "sum_stats"]
