"""Prometheus ``/metrics``: read from the running service at scrape time (nothing is
counted on the DNS path for it).

Open to loopback by default, as exporters usually are; ``[web] metrics_allow``
(networks) and ``metrics_token`` (a bearer token, from any address) widen it.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from mamori import config as cfgmod
from mamori.resolver.upstream import LATENCY_BUCKETS

G, C = GaugeMetricFamily, CounterMetricFamily
Z, U = ["zone"], ["upstream"]

RCODES = {-1: "none", 0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
          5: "REFUSED"}  # fmt: skip
STAT_COUNTERS = (
    ("queries", "mamori_queries_total", "DNS queries received"),
    ("cache_hits", "mamori_cache_hits_total", "answers from the cache"),
    ("cache_misses", "mamori_cache_misses_total", "questions sent upstream"),
    ("stale_answers", "mamori_stale_answers_total", "expired answers served (RFC 8767)"),
    ("rewrites", "mamori_policy_rewrites_total", "answers rewritten by policy"),
    ("refused", "mamori_refused_total", "queries refused (ACL)"),
    ("ratelimited", "mamori_ratelimited_total", "queries over the per-client rate limit"),
    ("servfail", "mamori_servfail_total", "SERVFAIL answers"),
    ("formerr", "mamori_formerr_total", "FORMERR answers"),
    ("truncated", "mamori_truncated_total", "answers sent with TC=1"),
    ("dropped_malformed", "mamori_malformed_dropped_total", "malformed packets dropped"),
)


class MamoriCollector(Collector):
    def __init__(self, cfg: cfgmod.Config, runtime: Any = None) -> None:
        self.cfg = cfg
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        svc = getattr(rt, "svc", None)
        if svc is not None:
            yield from self._service(svc)
        writer = getattr(rt, "writer", None)
        if writer is not None:
            yield from self._writer(writer)
        events = getattr(rt, "events", None)
        if events is not None:
            c = C("mamori_events_dropped", "query log events dropped (queue full)")
            c.add_metric([], events.dropped)
            yield c
        tap = getattr(rt, "answer_tap", None)
        if tap is not None:
            c = CounterMetricFamily("mamori_pdns_dropped", "answers not recorded (queue full)")
            c.add_metric([], tap.dropped)
            yield c
        subs = getattr(rt, "subs", None)
        if subs is not None:
            yield from self._transfers(subs)
        yield from self._feeds()

    def _service(self, svc: Any) -> Iterator[Metric]:
        p = svc.pipeline
        for attr, name, doc in STAT_COUNTERS:
            c = CounterMetricFamily(name.removesuffix("_total"), doc)
            c.add_metric([], getattr(p.stats, attr))
            yield c
        g = GaugeMetricFamily("mamori_cache_entries", "entries in the cache")
        g.add_metric([], len(p.cache.data))
        yield g
        g = GaugeMetricFamily("mamori_cache_bytes", "bytes held by the cache")
        g.add_metric([], getattr(p.cache, "bytes", 0))
        yield g
        yield from self._upstreams(p.pool.upstreams)
        policy = p.policy
        if policy is not None:
            rules = G("mamori_policy_zone_rules", "rules per policy zone", labels=Z)
            serial = G("mamori_policy_zone_serial", "serial per zone", labels=Z)
            for z in policy.zones:
                rules.add_metric([z.name], z.rule_count)
                serial.add_metric([z.name], z.serial)
            yield rules
            yield serial

    def _upstreams(self, upstreams: list[Any]) -> Iterator[Metric]:
        import time

        now = time.time()
        up = G("mamori_upstream_up", "1 if the upstream is in use", labels=U)
        rtt = G("mamori_upstream_srtt_seconds", "smoothed RTT", labels=U)
        q = C("mamori_upstream_queries", "queries sent", labels=U)
        err = C("mamori_upstream_errors", "timeouts and errors", labels=U)
        hist = HistogramMetricFamily("mamori_upstream_latency_seconds", "answer latency", labels=U)
        for u in upstreams:
            up.add_metric([u.name], 1 if u.is_up(now) else 0)
            rtt.add_metric([u.name], u.srtt)
            q.add_metric([u.name], u.queries)
            err.add_metric([u.name], u.errors)
            buckets, total = [], 0
            for bound, n in zip([*map(str, LATENCY_BUCKETS), "+Inf"], u.latency, strict=True):
                total += n
                buckets.append((bound, total))
            hist.add_metric([u.name], buckets, u.latency_sum)
        yield from (up, rtt, q, err, hist)

    def _writer(self, writer: Any) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "mamori_responses", "logged answers by rcode (all queries with the query log on;"
            " policy hits only with it off)", labels=["rcode"],
        )  # fmt: skip
        for rcode, n in sorted(writer.rcodes.items()):
            c.add_metric([RCODES.get(rcode, str(rcode))], n)
        yield c
        cats = self._categories()
        a = CounterMetricFamily(
            "mamori_blocks", "policy hits by zone, action and category",
            labels=["zone", "action", "category"],
        )  # fmt: skip
        for (zone, action), n in sorted(writer.actions.items()):
            a.add_metric([zone, action, cats.get(zone, "")], n)
        yield a

    def _transfers(self, subs: Any) -> Iterator[Metric]:
        serial = G("mamori_zone_transfer_serial", "transferred serial", labels=Z)
        ok = G("mamori_zone_transfer_last_success_timestamp_seconds", "last good check", labels=Z)
        expired = G("mamori_zone_transfer_expired", "1 if expired", labels=Z)
        for name, sub in subs.subs.items():
            st = sub.status
            serial.add_metric([name], st.serial or 0)
            ok.add_metric([name], st.last_success or 0)
            expired.add_metric([name], 1 if st.expired else 0)
        yield from (serial, ok, expired)

    def _feeds(self) -> Iterator[Metric]:
        from mamori.feeds.dataset import db_path
        from mamori.web.consoledata import ConsoleData

        if not self.cfg.feeds or not db_path(self.cfg.store.path).exists():
            return
        last = GaugeMetricFamily(
            "mamori_feed_last_update_timestamp_seconds", "last good update", labels=["feed"]
        )
        entries = GaugeMetricFamily("mamori_feed_entries", "entries listed", labels=["feed"])
        try:
            feeds = ConsoleData(self.cfg).feeds()
        except sqlite3.Error:
            return
        for f in feeds:
            last.add_metric([f["name"]], f["last_ok"] or 0)
            entries.add_metric([f["name"]], f["entries"])
        yield from (last, entries)

    def _categories(self) -> dict[str, str]:
        return {z: f.category for z, f in cfgmod.zone_feeds(self.cfg).items()}


def registry(cfg: cfgmod.Config, runtime: Any = None) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(MamoriCollector(cfg, runtime))
    return reg


def allowed(cfg: cfgmod.Config, client: str | None, authorization: str | None) -> bool:
    token = cfg.web.metrics_token
    if token and authorization == f"Bearer {token}":
        return True
    if client is None:
        return False
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in cfg.web.metrics_allow)
