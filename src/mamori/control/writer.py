"""The single writer of the query log and the hit log, in a thread of the control plane.

Events reach it from the data plane in batches (events.py describes the
tuple): from the in-process queue (``workers = 1``) or from the workers'
channels through an ``Inbox``. Every ``flush_interval`` seconds the thread
turns what arrived into rows and writes them in one transaction, counts
answers by rcode and outcome and policy hits by zone, prints policy hits as
BIND-style log lines, hands the hits to the alert rules, and prunes rows
older than the retention (``[store] query_log_days``, or a ``[[group]]``'s own
``query_log_days`` for the rows of its clients). Client addresses are written
as ``[store] client_addresses`` says (store/privacy.py); the alert rules get
them whole, in memory, and apply the same rule to what they keep and send. A
batch the store refuses (disk full, locked) is counted as failed and dropped:
the DNS path never waits for the disk.

Crash accounting (docs/architecture.md, "Crash safety"): a committed row is on
disk (SQLite WAL; it survives a kill of the process). What waits in memory
(the queues, a batch being written) is lost when the process is killed. Each
run of the writer has a ``writer_runs`` row updated in the same transaction as
every batch: events received (taken from the queues, or waiting in them, at
that commit), committed, failed. Between commits, every ``SAMPLE_EVERY``
seconds, the writer also notes the events received so far in a small
memory-mapped file beside the database (``<db>-events``: no system call, and
the page cache keeps it when the process is killed). A run that stops normally
marks itself clean after its final drain; at the next start a run not marked
clean is reported: it lost at least (received, the larger of the two notes) -
committed - failed events; those that arrived in its last ``SAMPLE_EVERY``
seconds are not counted. The number is logged and kept as ``lost_at_last_crash``
(and in the next run's ``writer_runs.lost_before``). With ``[store] url``
(ClickHouse) a batch kept in the local spool while the server is away is committed
(local disk, written atomically): the next start sends what a crashed run kept
before it counts, so those events are not reported lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import dns.rdatatype

from mamori.config import GroupConfig
from mamori.dnsutil import wire
from mamori.resolver.events import DRAIN_MAX, Event, EventQueue
from mamori.resolver.query import Outcome
from mamori.store.base import QueryLogStore, WriterMark, WriterRun
from mamori.store.privacy import masker
from mamori.store.runs import ReceivedNote
from mamori.threads import lower_thread_priority

log = logging.getLogger(__name__)
rpz_log = logging.getLogger("mamori.rpz")

PRUNE_EVERY = 3600.0
SAMPLE_EVERY = 0.1  # seconds between notes of the events received (crash accounting)
NAME_MEMO_MAX = 100_000
BEGIN_RETRY = 5.0  # seconds between attempts to record the run while the store fails
_LABELS = {o.value: o.label for o in Outcome}

# A policy hit as the alert rules get it: (time, client, qname, zone, trigger, action,
# outcome label of the answer: "blocked", "dropped", or "cached"/"resolved"... for PASSTHRU,
# "log_only" for a zone with policy "disabled")
HitRecord = tuple[float, str, str, str, str, str, str]


class Inbox:
    """Event batches from the workers, bounded (``dropped`` counts what did not fit).

    Filled on the control plane's loop, drained by the writer thread.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.batches: deque[list[Event]] = deque()
        self.count = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def put(self, batch: list[Event]) -> None:
        with self._lock:
            if self.count + len(batch) > self.limit:
                self.dropped += len(batch)
                return
            self.batches.append(batch)
            self.count += len(batch)

    def drain(self, max_items: int = DRAIN_MAX) -> list[Event]:
        out: list[Event] = []
        with self._lock:
            while self.batches and len(out) < max_items:
                batch = self.batches.popleft()
                self.count -= len(batch)
                out += batch
        return out


def question_text(key: bytes, memo: dict[bytes, tuple[str, int]]) -> tuple[str, int]:
    """(qname text, qtype) of a cache key, memoised: most logged names repeat."""
    q = memo.get(key)
    if q is None:
        if len(memo) >= NAME_MEMO_MAX:
            memo.clear()
        q = memo[key] = (wire.name_to_text(key[:-5]), (key[-5] << 8) | key[-4])
    return q


def _type_text(qtype: int) -> str:
    try:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
    except ValueError:
        return f"TYPE{qtype}"


class EventWriter(threading.Thread):
    """Background writer: sources -> rows -> store, batched, with retention.

    *sources*: callables returning the events waiting (non-blocking).
    """

    def __init__(
        self,
        sources: list[Callable[[], list[Event]]],
        store: QueryLogStore,
        flush_interval: float,
        retention_days: int,
        client_addresses: str = "full",
        group_days: dict[str, int] | None = None,
        backlog: Callable[[], int] | None = None,
        received_path: Path | None = None,
    ) -> None:
        """*retention_days*: of the query log (0: forever); *group_days*: per group
        name, its own (0: forever; groups not in it use *retention_days*); *backlog*:
        how many events wait in the sources now, and *received_path* the file noting
        the events received between commits (the crash accounting)."""
        super().__init__(name="mamori-event-writer", daemon=True)
        self.sources = sources
        self.store = store
        self.flush_interval = flush_interval
        self.retention_days = retention_days
        self.client_text = masker(client_addresses)  # what the disk and the log get
        # a Client-IP rule's name holds the client's address (32.7.2.0.192.rpz-client-ip.Z):
        # written without it unless addresses are kept in full
        self.mask_client_rules = client_addresses != "full"
        self.group_days = group_days or {}
        self.written = 0
        self.failed = 0  # events of batches the store refused
        self.backlog = backlog or (lambda: 0)
        self.received = 0  # events taken from the sources since start
        self.committed = 0  # events whose rows are committed
        self.run_id = 0  # this run's writer_runs row (0: none, the store refused)
        self._begin_failed = 0  # failed begin() calls (retried on the timer)
        self._begin_at = 0.0  # monotonic time of the next try
        self.lost_at_last_crash = 0  # events the previous run lost (a crash), at start
        self.received_note = ReceivedNote(received_path) if received_path else None
        self._stop_flag = threading.Event()
        self._last_prune = 0.0
        self._names: dict[bytes, tuple[str, int]] = {}
        # A log-only zone's match (policy "disabled", a feed with enforce = "preview"),
        # kept until its query's own answer event (which follows it on the same queue):
        # a row whose answer no rule changed shows it as "would block" (action "disabled").
        self._would: dict[tuple[str, bytes], tuple[str, str, str, str, bool]] = {}
        self.zone_hits: dict[str, int] = {}  # policy hits per zone since start
        # since start, for /metrics: answers by rcode (-1: none sent) and by outcome,
        # policy hits by (zone, action)
        self.rcodes: dict[int, int] = {}
        self.outcomes: dict[str, int] = {}
        self.actions: dict[tuple[str, str], int] = {}
        # called after each batch with its policy hits (the alert rules); must not block
        self.hit_listeners: list[Callable[[list[HitRecord]], None]] = []

    def begin(self) -> None:
        """Record this run in the store and report what the previous one lost, if it
        crashed (call before ``start``)."""
        noted = self.received_note.read() if self.received_note else None
        try:
            self.run_id, last = self.store.begin_run(os.getpid(), noted)
        except Exception as e:  # tried again on the timer (a server still starting)
            if not self._begin_failed:
                log.error("query log: cannot record the writer's run: %s (tried again)", e)
            self._begin_failed += 1
            self._begin_at = time.monotonic() + BEGIN_RETRY
            return
        if self._begin_failed:
            log.warning("query log: the writer's run is recorded now")
            self._begin_failed = 0
        if self.received_note is not None:
            self.received_note.start(self.run_id)
        if last is not None and not last.clean and self._maybe_twin(last):
            return
        if last is not None and not last.clean:
            self.lost_at_last_crash = last.lost
            node = getattr(self.store, "node", "?")
            twin = (  # a ClickHouse store (it has a spool to drain): shared by a fleet
                f" (or another node is running with node_name {node}: give each node its own)"
                if hasattr(self.store, "drain")
                else ""
            )
            log.warning(
                "query log: the last run (pid %d, last commit %s) did not stop cleanly:"
                " %d events it had received were not written (lost); events after its"
                " last commit are not counted%s",
                last.pid,
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last.updated)),
                last.lost,
                twin,
            )

    def _maybe_twin(self, last: WriterRun) -> bool:
        """Whether the previous run, not marked stopped, looks like another node running
        now with the same ``[server] node_name`` (a ClickHouse store shared by a fleet: it
        wrote within two flush intervals + 30 s, and this node's spool held none of its
        batches); if so, say that (the crash report would be wrong)."""
        ago = time.time() - last.updated
        if getattr(self.store, "replayed", True) or ago > 2 * self.flush_interval + 30.0:
            return False
        node = getattr(self.store, "node", "?")
        log.warning(
            "query log: another node may be running with node_name %s (its run, pid %d,"
            " wrote %.0f s ago): give each node its own [server] node_name (if that run was"
            " this node's and crashed just now, its last %d events were not written)",
            node, last.pid, max(ago, 0.0), last.lost,
        )  # fmt: skip
        return True

    def mark(self, pending: int = 0) -> WriterMark | None:
        """This run's counts now; *pending*: events taken but not yet counted."""
        if not self.run_id:
            return None
        received = self.received + self.backlog()
        return WriterMark(self.run_id, received, self.committed + pending, self.failed)

    def run(self) -> None:
        lower_thread_priority()
        note = self.received_note
        tick = min(SAMPLE_EVERY, self.flush_interval) if note else self.flush_interval
        due = time.monotonic() + self.flush_interval
        while not self._stop_flag.wait(tick):
            if note is not None:
                note.update(self.received + self.backlog())
            if time.monotonic() >= due:
                if self._begin_failed and time.monotonic() >= self._begin_at:
                    self.begin()  # before the kept batches go: the crash is reported
                self.flush_all()
                self.send_kept()
                self._maybe_prune()
                due = time.monotonic() + self.flush_interval
        self.flush_all()  # final drain: everything still queued when asked to stop
        mark = self.mark()
        if mark is not None:
            try:
                self.store.end_run(mark)
            except Exception as e:
                log.error("query log: cannot mark the writer's clean stop: %s", e)

    def send_kept(self) -> None:
        """Send the batches a ClickHouse store keeps in its spool, on the timer: an idle
        node (no events) sends them as soon as the server answers again (the store paces
        its attempts: one per ``RETRY_AFTER`` seconds while it is away)."""
        drain = getattr(self.store, "drain", None)  # only a store with a spool has one
        if drain is None:
            return
        try:
            drain()
        except Exception as e:  # never stops the writer: the next tick tries again
            log.error("query log: kept batches not sent: %s", e)

    def flush_all(self) -> None:
        for source in self.sources:
            while batch := source():
                self.flush(batch)

    def flush(self, batch: list[Event]) -> None:
        if not batch:
            return
        self.received += len(batch)
        try:
            self._flush(batch)
        except Exception as e:  # disk full, locked...: lose this batch, keep serving
            self.failed += len(batch)
            log.error("query log: could not write %d events: %s", len(batch), e)

    def _flush(self, batch: list[Event]) -> None:
        memo = self._names
        rows = []
        counts: dict[tuple[str, str, str], list[float]] = {}
        rcodes, outcomes = self.rcodes, self.outcomes
        hits: list[HitRecord] = []
        log_only = Outcome.LOG_ONLY.value
        client_text = self.client_text
        for event in batch:
            ts, client, key, rcode, answer, latency, upstream, outcome, reason, tcp, hit = event[
                :11
            ]
            group, _, device = event[11].partition("@")  # policy.groups.group_label's text
            qname, qtype = question_text(key, memo)
            zone = rule = trigger = action = ""
            label = _LABELS.get(outcome, str(outcome))
            if hit is not None:
                zone, rule, trigger, action, log_line = hit
                if trigger == "CLIENT-IP" and self.mask_client_rules:
                    rule = "rpz-client-ip." + zone.rstrip(".")
                hits.append((ts, client, qname, zone, trigger, action, label))  # in memory
                c = counts.get((zone, trigger, action))
                if c is None:
                    counts[(zone, trigger, action)] = [1, ts, ts]
                else:
                    c[0] += 1
                    c[2] = max(c[2], ts)
                if log_line:
                    rpz_log.info(
                        "client %s (%s): rpz %s %s rewrite %s/%s/IN via %s",
                        client_text(client), qname.rstrip("."), trigger, action, qname.rstrip("."),
                        _type_text(qtype), rule,
                    )  # fmt: skip
            if outcome == log_only:  # a disabled zone's match: a hit, not an answer
                if len(self._would) >= NAME_MEMO_MAX:
                    self._would.clear()  # (answers never sent: bounded)
                if hit is not None:
                    self._would.setdefault((client, key), hit)  # the first zone's, in order
                continue
            if self._would:
                would = self._would.pop((client, key), None)
                if would is not None and hit is None:
                    zone, rule, trigger, action, _ = would  # "would block": action "disabled"
                    if trigger == "CLIENT-IP" and self.mask_client_rules:
                        rule = "rpz-client-ip." + zone.rstrip(".")
            rcodes[rcode] = rcodes.get(rcode, 0) + 1
            outcomes[label] = outcomes.get(label, 0) + 1
            rows.append(
                (ts, client_text(client), qname, qtype, rcode, answer, latency, upstream,
                 outcome == Outcome.CACHED, "tcp" if tcp else "udp", zone, rule, trigger, action,
                 label, reason, group, device)
            )  # fmt: skip
        # the rows, their policy-hit counts and this run's counts in one transaction
        # (the batch counted committed)
        hit_counts = [
            (z, t, a, int(n), first, last) for (z, t, a), (n, first, last) in counts.items()
        ]
        self.store.write_queries(rows, self.mark(len(batch)), hit_counts)
        self.committed += len(batch)
        self.written += len(rows)
        if counts:
            for (z, _t, a), (n, _f, _l) in counts.items():
                self.zone_hits[z] = self.zone_hits.get(z, 0) + int(n)
                self.actions[(z, a)] = self.actions.get((z, a), 0) + int(n)
        for listener in self.hit_listeners:
            listener(hits)

    def configure(self, retention_days: int, group_days: dict[str, int]) -> None:
        """New retentions (a reload); applied at the next prune."""
        self.retention_days, self.group_days = retention_days, group_days

    def _maybe_prune(self) -> None:
        now = time.time()
        if not (self.retention_days or self.group_days) or now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        self.prune(now)

    def prune(self, now: float) -> int:
        """Delete the rows past their retention now; how many."""
        before = now - self.retention_days * 86400 if self.retention_days else 0.0
        groups = {g: now - d * 86400 if d else None for g, d in self.group_days.items()}
        try:
            n = self.store.prune_queries(before, groups)
        except Exception as e:
            log.error("query log: prune failed: %s", e)
            return 0
        if n:
            log.info("query log: pruned %d rows older than %d days%s", n, self.retention_days,
                     " (or their group's retention)" if groups else "")  # fmt: skip
        return n

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_flag.set()
        self.join(timeout)
        if self.zone_hits:
            log.info(
                "policy hits since start: %s",
                ", ".join(f"{z} {n}" for z, n in sorted(self.zone_hits.items())),
            )


def group_days(groups: Iterable[GroupConfig]) -> dict[str, int]:
    """Each ``[[group]]`` with a retention of its own: name -> days (0: forever)."""
    return {g.name: g.query_log_days for g in groups if g.query_log_days >= 0}


def queue_source(q: EventQueue) -> Callable[[], list[Event]]:
    """Source for the in-process queue of a data plane (``workers = 1``)."""
    return q.drain
