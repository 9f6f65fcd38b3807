"""Alert rules, evaluated in their own thread.

Policy hits arrive from the query-log writer (``on_hits``, batched, never from
the DNS loop); state rules (a feed not updated for ``max_age``, an upstream
marked down, a zone transfer failing or expired) are checked every
``CHECK_EVERY`` seconds. A rule fires once per subject (client, feed, upstream,
zone) per ``throttle`` seconds; every alert and its delivery result is kept in
``<store dir>/alerts.sqlite`` (the console's alert history). Hits carry the
client's full address (in memory: a rule counts per client); the subject,
message and details of an alert carry it as ``[store] client_addresses`` says.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from mamori import config as cfgmod
from mamori.alerts.sinks import Alert, send
from mamori.config.alerts import AlertConfig
from mamori.store.privacy import masker

log = logging.getLogger(__name__)

CHECK_EVERY = 30.0
# A policy hit as the writer hands it over: (time, client, qname, zone, trigger, action,
# outcome of the answer: "blocked", "dropped", "log_only" (policy disabled), else let through)
Hit = tuple[float, str, str, str, str, str, str]
BLOCKING = ("blocked", "dropped")
# A new brand look-alike as the watch hands it over: brand, name, kind, target, distance ...
BrandAlert = dict[str, object]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    time REAL NOT NULL, rule TEXT NOT NULL, severity TEXT NOT NULL, subject TEXT NOT NULL,
    message TEXT NOT NULL, delivered TEXT NOT NULL, failed TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time);
"""


def history_path(cfg: cfgmod.Config) -> Path:
    return cfg.store.path.parent / "alerts.sqlite"


class AlertEngine(threading.Thread):
    def __init__(self, cfg: cfgmod.Config, runtime: Any = None) -> None:
        super().__init__(name="mamori-alerts", daemon=True)
        self.cfg = cfg
        self.runtime = runtime
        self.inbox: queue.Queue[list[Hit]] = queue.Queue(maxsize=1000)
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self._stop_flag = threading.Event()
        self.crashes: queue.Queue[tuple[int, str, float]] = queue.Queue(maxsize=100)
        self.brands: queue.Queue[list[BrandAlert]] = queue.Queue(maxsize=100)
        self._last: dict[tuple[str, str], float] = {}  # (rule, subject) -> last alert
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._born = time.time()
        self._categories = {z: f.category for z, f in cfgmod.zone_feeds(cfg).items()}
        self.client_text = masker(cfg.store.client_addresses)

    def _follow_reloads(self) -> None:
        """Take the rules, sinks and feeds of the configuration in force (a SIGHUP may
        have added or changed them; the history's place and the client-address rule
        stay as started)."""
        cur = self.runtime.config if self.runtime is not None else None
        if cur is None or cur is self.cfg:
            return
        self.cfg = cur
        self._categories = {z: f.category for z, f in cfgmod.zone_feeds(cur).items()}

    # ------------------------------------------------------------- feeding
    def on_hits(self, hits: list[Hit]) -> None:
        """From the writer thread: never blocks (a full inbox drops and counts)."""
        if not hits:
            return
        try:
            self.inbox.put_nowait(hits)
        except queue.Full:
            self.dropped += len(hits)

    def on_crash_loop(self, worker: int, message: str) -> None:
        """From the supervisor: a worker keeps dying. Never blocks (a full queue drops)."""
        try:
            self.crashes.put_nowait((worker, message, time.time()))
        except queue.Full:
            self.dropped += 1

    def on_brand(self, matches: list[BrandAlert]) -> None:
        """From the brand watch: new look-alike matches. Never blocks (a full queue drops
        and counts)."""
        try:
            self.brands.put_nowait(matches)
        except queue.Full:
            self.dropped += len(matches)

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(15)

    # ------------------------------------------------------------- the loop
    def run(self) -> None:
        db = sqlite3.connect(history_path(self.cfg), timeout=10)
        db.executescript(_SCHEMA)
        self.db = db
        if self.cfg.store.url is not None:  # the fleet's history: every node's alerts
            from mamori.store.querylog_open import alert_sink

            self.fleet = alert_sink(self.cfg)
        next_check = time.monotonic() + CHECK_EVERY
        try:
            while not self._stop_flag.is_set():
                try:
                    hits = self.inbox.get(timeout=0.5)
                except queue.Empty:
                    hits = []
                self._follow_reloads()
                for hit in hits:
                    self._hit(hit)
                while not self.crashes.empty():
                    self._crash(*self.crashes.get_nowait())
                while not self.brands.empty():
                    self._brand(self.brands.get_nowait())
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + CHECK_EVERY
                    self.check_state()
            while not self.inbox.empty():  # what the writer handed over before the stop
                for hit in self.inbox.get_nowait():
                    self._hit(hit)
        finally:
            db.close()

    def _hit(self, hit: Hit) -> None:
        when, client, qname, zone, _trigger, action, outcome = hit
        category = self._categories.get(zone, "")
        for rule in self.cfg.alerts:
            if rule.when != "hit":
                continue
            if rule.category and category not in rule.category:
                continue
            if rule.zone and zone not in rule.zone:
                continue
            if rule.action and action not in rule.action:
                continue
            if not rule.action and outcome not in BLOCKING:
                continue  # by default only blocks alert (not PASSTHRU, not "disabled" zones)
            if rule.count > 1:
                win = self._windows.setdefault((rule.name, client), deque())
                win.append(when)
                while win and win[0] < when - rule.within:
                    win.popleft()
                if len(win) < rule.count:
                    continue
                win.clear()
            what = f"{rule.count} hits in {rule.within:g}s" if rule.count > 1 else "a hit"
            shown = self.client_text(client)
            self.fire(
                rule,
                shown,
                f"client {shown} asked for {qname.rstrip('.')} ({category or zone},"
                f" {action}): {what} of rule {rule.name}",
                {
                    "client": shown,
                    "name": qname.rstrip("."),
                    "zone": zone,
                    "category": category,
                    "action": action,
                },
                when,
            )

    def check_state(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for rule in self.cfg.alerts:
            if rule.when == "feed_stale":
                self._feeds_stale(rule, now)
            elif rule.when == "upstream_down":
                self._upstreams_down(rule, now)
            elif rule.when == "transfer_failed":
                self._transfers_failed(rule, now)
            elif rule.when == "worker_restarts":
                self._workers_failing(rule, now)

    def _feeds_stale(self, rule: AlertConfig, now: float) -> None:
        from mamori.feeds.dataset import FeedDB, db_path

        path = db_path(self.cfg.store.path)
        last: dict[str, float | None] = {}
        if path.exists():
            with FeedDB(path) as fdb:
                last = {f.name: fdb.last_good(f.name) for f in self.cfg.feeds}
        for feed in self.cfg.feeds:
            if not feed.enabled:
                continue
            good = last.get(feed.name)
            since = good if good is not None else self._born
            if now - since >= rule.max_age:
                when = "never" if good is None else f"{(now - good) / 3600:.1f} h ago"
                self.fire(rule, feed.name, f"feed {feed.name} is stale: last good update {when}",
                          {"feed": feed.name}, now)  # fmt: skip

    def _upstreams_down(self, rule: AlertConfig, now: float) -> None:
        if self.runtime is None:
            return
        for u in self.runtime.upstreams():
            if not u.up:
                self.fire(rule, u.name, f"upstream {u.name} is down ({u.errors} errors)",
                          {"upstream": u.name}, now)  # fmt: skip

    def _crash(self, worker: int, message: str, when: float) -> None:
        """A worker's restarts are being delayed (the supervisor said so when it happened)."""
        for rule in self.cfg.alerts:
            if rule.when == "worker_restarts":
                self.fire(rule, f"worker {worker}", message, {"worker": str(worker)}, when)

    def _brand(self, matches: list[BrandAlert]) -> None:
        """One alert per new look-alike and ``when = "brand"`` rule (throttled by name)."""
        for rule in self.cfg.alerts:
            if rule.when != "brand":
                continue
            for m in matches:
                self.fire(rule, str(m["name"]),
                          f"brand {m['brand']}: look-alike {m['name']} ({m['kind']},"
                          f" imitates {m['target']}, distance {m['distance']})",
                          {k: str(v) for k, v in m.items()}, time.time())  # fmt: skip

    def _workers_failing(self, rule: AlertConfig, now: float) -> None:
        """A data-plane worker that keeps dying (its restarts are being delayed)."""
        if self.runtime is None:
            return
        for w in self.runtime.workers():
            if w.state == "backoff":
                self.fire(rule, f"worker {w.number}",
                          f"worker {w.number} keeps dying ({w.exit_status}; {w.restarts} restarts"
                          f" since start): next start in {w.backoff:.0f}s",
                          {"worker": str(w.number), "status": w.exit_status}, now)  # fmt: skip
            elif w.state == "waiting":
                self.fire(rule, f"worker {w.number}",
                          f"worker {w.number} is not serving: it cannot map the policy version"
                          " (its compiled files are being compiled again)",
                          {"worker": str(w.number), "status": "waiting"}, now)  # fmt: skip

    def _transfers_failed(self, rule: AlertConfig, now: float) -> None:
        subs = getattr(self.runtime, "subs", None)
        if subs is None:
            return
        for name, sub in subs.subs.items():
            st = sub.status
            if st.expired or st.last_result.startswith("failed"):
                state = "expired" if st.expired else st.last_result
                self.fire(rule, name, f"zone transfer of {name}: {state}",
                          {"zone": name}, now)  # fmt: skip

    # ------------------------------------------------------------- sending
    def fire(
        self, rule: AlertConfig, subject: str, message: str, details: dict[str, str], when: float
    ) -> bool:
        """Send unless throttled; True when sent (to at least one sink)."""
        key = (rule.name, subject)
        last = self._last.get(key)
        if last is not None and when - last < rule.throttle:
            return False
        self._last[key] = when
        alert = Alert(rule.name, rule.severity, subject, message, when, details)
        ok, bad = [], []
        for sink in self.cfg.alert_sinks:
            if rule.sinks and sink.name not in rule.sinks:
                continue
            try:
                send(sink, alert)
                ok.append(sink.name)
            except Exception as e:  # a sink down costs that delivery, not the others
                bad.append(f"{sink.name}: {e}")
                log.error("alert %s: sink %s failed: %s", rule.name, sink.name, e)
        self.sent += 1
        self.failed += len(bad)
        log.warning("alert %s (%s): %s", rule.name, rule.severity, message)
        db = getattr(self, "db", None)
        if db is not None:
            with db:
                db.execute(
                    "INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (when, rule.name, rule.severity, subject, message, ",".join(ok),
                     "; ".join(bad)),
                )  # fmt: skip
        fleet = getattr(self, "fleet", None)
        if fleet is not None:  # ClickHouse ([store] url): a failure costs only that copy
            fleet((when, rule.name, rule.severity, subject, message, ",".join(ok),
                   "; ".join(bad)))  # fmt: skip
        return bool(ok)
