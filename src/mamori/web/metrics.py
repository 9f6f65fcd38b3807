"""Prometheus ``/metrics``: read from the running service at scrape time (nothing is
counted on the DNS path for it).

Open to loopback by default, as exporters usually are; ``[web] metrics_allow``
(networks) and ``metrics_token`` (a bearer token, from any address) widen it.
"""

from __future__ import annotations

import hmac
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
from mamori.control.view import LATENCY_BUCKETS, Runtime, merge_upstreams, sum_stats

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
    ("upstream_refused", "mamori_upstream_refused_total", "upstream REFUSED passed on (EDE 22)"),
    ("formerr", "mamori_formerr_total", "FORMERR answers"),
    ("truncated", "mamori_truncated_total", "answers sent with TC=1"),
    ("dropped_malformed", "mamori_malformed_dropped_total", "malformed packets dropped"),
    (
        "tcp_refused",
        "mamori_tcp_refused_total",
        "TCP connections closed at once (max connections, in all or per client address)",
    ),
    (
        "tcp_read_timeouts",
        "mamori_tcp_read_timeouts_total",
        "TCP connections closed: a message begun not whole within tcp_read_timeout",
    ),
    (
        "udp_send_dropped",
        "mamori_udp_send_dropped_total",
        "UDP answers not sent (error, queue full)",
    ),
)

# Response rate limiting ([rrl]), by kind of response: pipeline counter rrl_<what>_<kind>
RRL_KINDS = ("responses", "nxdomains", "errors")
RRL_COUNTERS = (
    ("limited", "mamori_rrl_limited_total", "UDP answers over their response rate limit"
     " (with log_only: counted and sent)"),
    ("dropped", "mamori_rrl_dropped_total", "UDP answers not sent (response rate limit)"),
    ("slipped", "mamori_rrl_slipped_total", "UDP answers replaced by a TC=1 answer"
     " (response rate limit, slip)"),
)  # fmt: skip


class MamoriCollector(Collector):
    def __init__(self, cfg: cfgmod.Config, runtime: Runtime | None = None) -> None:
        self.cfg = cfg
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime
        if rt is not None:
            snaps = rt.snapshots()
            if snaps:
                yield from self._service(snaps)
            yield from self._workers(rt)
            yield from self._policy(rt)
            if rt.writer is not None:
                yield from self._writer(rt.writer)
            events, tap = rt.dropped()
            c = C("mamori_events_dropped", "query log events dropped (queues full)")
            c.add_metric([], events)
            yield c
            if self.cfg.pdns.enabled:
                c = C("mamori_pdns_dropped", "answers not recorded (queues full)")
                c.add_metric([], tap)
                yield c
            if rt.subs is not None:
                yield from self._transfers(rt.subs)
        yield from self._spools(rt)
        yield from self._feeds()

    def _spools(self, rt: Runtime | None) -> Iterator[Metric]:
        """What waits on this node's disk for ClickHouse (``[store] url``, ``[pdns] url``),
        read from the spool directories; batches dropped by the running service."""
        from mamori.store.pdns_open import local_dir
        from mamori.store.pdns_spool import usage
        from mamori.store.querylog_open import spool_dir

        where = []
        if self.cfg.store.url is not None:
            where.append(("querylog", spool_dir(self.cfg)))
        if self.cfg.pdns.url is not None:
            where.append(("pdns", local_dir(self.cfg)))
        if not where:
            return
        s = ["store"]
        batches = G("mamori_spool_batches", "batches kept on local disk for ClickHouse", labels=s)
        size = G("mamori_spool_bytes", "bytes of the batches kept on local disk", labels=s)
        dropped = C("mamori_spool_dropped", "batches dropped: the spool was full (since start)",
                    labels=s)  # fmt: skip
        rejected = G("mamori_spool_rejected_batches",
                     "batches ClickHouse refused, set aside in the spool's rejected/ directory",
                     labels=s)  # fmt: skip
        for store, directory in where:
            n, b = usage(directory)
            batches.add_metric([store], n)
            size.add_metric([store], b)
            rejected.add_metric([store], usage(directory / "rejected")[0])
            spool = rt.spools.get(store) if rt is not None else None
            if spool is not None:
                dropped.add_metric([store], int(spool.dropped))
        yield batches
        yield size
        yield rejected
        if rt is not None and rt.spools:
            yield dropped

    def _service(self, snaps: list[Any]) -> Iterator[Metric]:
        totals = sum_stats(snaps)
        for attr, name, doc in STAT_COUNTERS:
            c = C(name.removesuffix("_total"), doc + " (all workers)")
            c.add_metric([], totals.get(attr, 0))
            yield c
        for what, name, doc in RRL_COUNTERS:
            c = C(name.removesuffix("_total"), doc + " (all workers)", labels=["kind"])
            for kind in RRL_KINDS:
                c.add_metric([kind], totals.get(f"rrl_{what}_{kind}", 0))
            yield c
        g = G("mamori_cache_entries", "entries in the caches (all workers)")
        g.add_metric([], totals.get("cache_entries", 0))
        yield g
        g = G("mamori_cache_bytes", "bytes held by the caches (all workers)")
        g.add_metric([], totals.get("cache_bytes", 0))
        yield g
        yield from self._upstreams(merge_upstreams(snaps))
        s = self.cfg.server
        if s.dot or s.doh or s.doq:
            yield from self._encrypted(totals)

    def _encrypted(self, totals: dict[str, int]) -> Iterator[Metric]:
        """DoT / DoH / DoQ listeners: counters ``{transport}_{what}`` of the data planes."""
        t = ["transport"]
        kinds = ("dot", "doh", "doq")
        accepted = C("mamori_encrypted_connections", "encrypted DNS connections accepted"
                     " (all workers)", labels=t)  # fmt: skip
        refused = C("mamori_encrypted_refused", "encrypted DNS connections closed at once:"
                    " [tls] max_connections or max_per_client reached", labels=t)  # fmt: skip
        failed = C("mamori_encrypted_handshake_failures", "TLS handshakes that failed"
                   " (not TLS, no common version, cipher or ALPN)", labels=t)  # fmt: skip
        timeouts = C("mamori_encrypted_timeouts", "encrypted DNS connections closed by a"
                     " timeout: handshake, read (a message begun) or idle",
                     labels=["transport", "kind"])  # fmt: skip
        open_ = G("mamori_encrypted_open_connections", "encrypted DNS connections open now"
                  " (all workers)", labels=t)  # fmt: skip
        for k in kinds:
            accepted.add_metric([k], totals.get(f"{k}_accepted", 0))
            refused.add_metric([k], totals.get(f"{k}_refused", 0))
            failed.add_metric([k], totals.get(f"{k}_handshake_failures", 0))
            open_.add_metric([k], totals.get(f"{k}_open", 0))
            timeouts.add_metric([k, "handshake"], totals.get(f"{k}_handshake_timeouts", 0))
            timeouts.add_metric([k, "read"], totals.get(f"{k}_read_timeouts", 0))
            timeouts.add_metric([k, "idle"], totals.get(f"{k}_idle_closed", 0))
        yield from (accepted, refused, failed, timeouts, open_)
        status = C("mamori_doh_responses", "DNS over HTTPS responses by HTTP status",
                   labels=["status"])  # fmt: skip
        for key in sorted(totals):
            if key.startswith("doh_status_"):
                status.add_metric([key.removeprefix("doh_status_")], totals[key])
        yield status
        c = C("mamori_doq_protocol_errors", "DoQ connections closed with DOQ_PROTOCOL_ERROR"
              " (RFC 9250: ID not 0, bad length, unidirectional stream)")  # fmt: skip
        c.add_metric([], totals.get("doq_protocol_errors", 0))
        yield c
        c = C("mamori_tls_reload_failures", "[tls] certificate reloads refused (the old"
              " certificate kept serving; per worker)")  # fmt: skip
        c.add_metric([], totals.get("tls_reload_failures", 0))
        yield c

    def _workers(self, rt: Runtime) -> Iterator[Metric]:
        infos = rt.workers()
        by_number = {s.worker: s for s in rt.snapshots()}
        w = ["worker"]
        count = G("mamori_workers", "data-plane workers configured (1: in the control process)")
        count.add_metric([], len(infos))
        up = G("mamori_worker_up", "1 if the worker is serving", labels=w)
        restarts = C("mamori_worker_restarts", "times the worker was restarted", labels=w)
        backoff = G("mamori_worker_backoff_seconds", "restart delay of a worker that keeps"
                    " dying (0: none)", labels=w)  # fmt: skip
        version = G("mamori_worker_policy_version", "policy version in force", labels=w)
        queries = C("mamori_worker_queries", "DNS queries received by the worker", labels=w)
        for info in infos:
            label = [str(info.number)]
            up.add_metric(label, 1 if info.state == "running" else 0)
            restarts.add_metric(label, info.restarts)
            backoff.add_metric(label, info.backoff)
            version.add_metric(label, info.policy_version)
            snap = by_number.get(info.number)
            queries.add_metric(label, snap.stats.get("queries", 0) if snap is not None else 0)
        yield from (count, up, restarts, backoff, version, queries)

    def _policy(self, rt: Runtime) -> Iterator[Metric]:
        g = G("mamori_policy_version", "policy version made by the control plane")
        g.add_metric([], rt.policy_version())
        yield g
        policy = rt.policy
        if policy is None:
            return
        rules = G("mamori_policy_zone_rules", "rules per policy zone", labels=Z)
        serial = G("mamori_policy_zone_serial", "serial per zone", labels=Z)
        for z in policy.zones:
            rules.add_metric([z.name], z.rule_count)
            serial.add_metric([z.name], z.serial)
        yield rules
        yield serial

    def _upstreams(self, upstreams: list[Any]) -> Iterator[Metric]:
        up = G("mamori_upstream_up", "1 if the upstream is in use (by every worker)", labels=U)
        rtt = G("mamori_upstream_srtt_seconds", "smoothed RTT", labels=U)
        q = C("mamori_upstream_queries", "queries sent", labels=U)
        err = C("mamori_upstream_errors", "timeouts and errors", labels=U)
        hist = HistogramMetricFamily("mamori_upstream_latency_seconds", "answer latency", labels=U)
        for u in upstreams:
            up.add_metric([u.name], 1 if u.up else 0)
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
        o = CounterMetricFamily(
            "mamori_answers", "logged answers by outcome (cached, resolved, stale, blocked,"
            " dropped, refused, error)", labels=["outcome"],
        )  # fmt: skip
        for outcome, n in sorted(writer.outcomes.items()):
            o.add_metric([outcome], n)
        yield o

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
            current = self.runtime.config if self.runtime is not None else None
            feeds = ConsoleData(current or self.cfg).feeds()  # console-added feeds too
        except sqlite3.Error:
            return
        for f in feeds:
            last.add_metric([f["name"]], f["last_ok"] or 0)
            entries.add_metric([f["name"]], f["entries"])
        yield from (last, entries)

    def _categories(self) -> dict[str, str]:
        return {z: f.category for z, f in cfgmod.zone_feeds(self.cfg).items()}


def registry(cfg: cfgmod.Config, runtime: Runtime | None = None) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(MamoriCollector(cfg, runtime))
    return reg


def allowed(cfg: cfgmod.Config, client: str | None, authorization: str | None) -> bool:
    """May *client* (an address) with *authorization* (the header) scrape /metrics: a
    ``metrics_allow`` address, or ``Bearer <metrics_token>`` (compared in constant time)."""
    token = cfg.web.metrics_token
    if token and hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
        return True
    if client is None:
        return False
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in cfg.web.metrics_allow)
