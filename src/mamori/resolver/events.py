"""Query events: a bounded in-memory queue on the DNS path, drained by a writer thread.

The DNS path only appends a tuple to a deque (or counts a drop when the queue
is full); it never waits for the store. The writer thread wakes every
``flush_interval`` seconds, turns events into rows and writes them in one
transaction, and prunes rows older than the retention.

Event tuple layout (kept positional for speed on the hot path):
  (ts, client, key, rcode, answer, latency_us, upstream, cache_hit, tcp, hit)
where *key* is the cache key: lowercased wire qname + qtype/qclass + flags byte,
rcode -1 means no answer was sent (policy DROP), and *hit* is None or the
policy rewrite. The writer also prints policy hits as BIND-style log lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import dns.rdatatype

from mamori.dnsutil import wire
from mamori.store.base import QueryLogStore

log = logging.getLogger(__name__)
rpz_log = logging.getLogger("mamori.rpz")

# Policy hit: (zone, rule name, trigger, action, write a BIND-style log line?)
Hit = tuple[str, str, str, str, bool]
Event = tuple[float, str, bytes, int, str, int, str, bool, bool, Hit | None]
DRAIN_MAX = 50_000
T = TypeVar("T")
PRUNE_EVERY = 3600.0


class BoundedQueue(Generic[T]):
    """Bounded FIFO; ``dropped`` counts what did not fit. Never blocks the producer."""

    __slots__ = ("dropped", "items", "limit")

    def __init__(self, limit: int) -> None:
        self.items: deque[T] = deque()
        self.limit = limit
        self.dropped = 0

    def put(self, item: T) -> None:
        if len(self.items) < self.limit:
            self.items.append(item)
        else:
            self.dropped += 1

    def drain(self, max_items: int = DRAIN_MAX) -> list[T]:
        out: list[T] = []
        pop = self.items.popleft
        try:
            for _ in range(min(len(self.items), max_items)):
                out.append(pop())
        except IndexError:
            pass
        return out


class EventQueue(BoundedQueue[Event]):
    """Query events from the DNS path (the pipeline appends to ``items`` directly)."""

    __slots__ = ()


class AnswerTap(BoundedQueue[tuple[float, bytes]]):
    """Upstream answers offered to passive DNS: (time, wire).

    Filled on the slow path (cache misses only), drained by a sensor thread
    that parses them off the DNS loop. Holds no client address.
    """

    __slots__ = ()


def _type_text(qtype: int) -> str:
    try:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
    except ValueError:
        return f"TYPE{qtype}"


NAME_MEMO_MAX = 100_000
WRITER_NICE = 10


def lower_thread_priority() -> None:
    """Make the calling thread yield the CPU to the DNS loop (Linux per-thread nice).

    When the DNS loop and the writer share a core, a writer busy inside SQLite
    (GIL released, CPU busy) would otherwise delay answers by a scheduler slice.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux / not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)


def question_text(key: bytes, memo: dict[bytes, tuple[str, int]]) -> tuple[str, int]:
    """(qname text, qtype) of a cache key, memoised: most logged names repeat."""
    q = memo.get(key)
    if q is None:
        if len(memo) >= NAME_MEMO_MAX:
            memo.clear()
        q = memo[key] = (wire.name_to_text(key[:-5]), (key[-5] << 8) | key[-4])
    return q


class EventWriter(threading.Thread):
    """Background writer: source -> rows -> store, batched, with retention."""

    def __init__(
        self,
        source: Callable[[float], list[Event]],
        store: QueryLogStore,
        flush_interval: float,
        retention_days: int,
    ) -> None:
        super().__init__(name="mamori-event-writer", daemon=True)
        self.source = source
        self.store = store
        self.flush_interval = flush_interval
        self.retention_days = retention_days
        self.written = 0
        self.failed = 0
        self._stop_flag = threading.Event()
        self._last_prune = 0.0
        self._names: dict[bytes, tuple[str, int]] = {}
        self.zone_hits: dict[str, int] = {}  # policy hits per zone since start
        # since start, for /metrics: answers by rcode (-1: none sent), rewrites by (zone, action)
        self.rcodes: dict[int, int] = {}
        self.actions: dict[tuple[str, str], int] = {}
        # called after each batch with its policy hits: (time, client, qname, zone, trigger,
        # action) each (the alert rules); must not block
        self.hit_listeners: list[Callable[[list[tuple[float, str, str, str, str, str]]], None]] = []

    def run(self) -> None:
        lower_thread_priority()
        while not self._stop_flag.is_set():
            self.flush(self.source(self.flush_interval))
            self._maybe_prune()
        # Final drain: everything still queued when we were asked to stop.
        while batch := self.source(0.0):
            self.flush(batch)

    def flush(self, batch: list[Event]) -> None:
        if not batch:
            return
        try:
            memo = self._names
            rows = []
            counts: dict[tuple[str, str, str], list[float]] = {}
            rcodes = self.rcodes
            hits: list[tuple[float, str, str, str, str, str]] = []
            for ts, client, key, rcode, answer, latency, upstream, cached, tcp, hit in batch:
                rcodes[rcode] = rcodes.get(rcode, 0) + 1
                qname, qtype = question_text(key, memo)
                zone = rule = trigger = action = ""
                if hit is not None:
                    zone, rule, trigger, action, log_line = hit
                    hits.append((ts, client, qname, zone, trigger, action))
                    c = counts.get((zone, trigger, action))
                    if c is None:
                        counts[(zone, trigger, action)] = [1, ts, ts]
                    else:
                        c[0] += 1
                        c[2] = max(c[2], ts)
                    if log_line:
                        rpz_log.info(
                            "client %s (%s): rpz %s %s rewrite %s/%s/IN via %s",
                            client,
                            qname.rstrip("."),
                            trigger,
                            action,
                            qname.rstrip("."),
                            _type_text(qtype),
                            rule,
                        )
                rows.append(
                    (
                        ts,
                        client,
                        qname,
                        qtype,
                        rcode,
                        answer,
                        latency,
                        upstream,
                        cached,
                        "tcp" if tcp else "udp",
                        zone,
                        rule,
                        trigger,
                        action,
                    )
                )
            self.store.write_queries(rows)
            self.written += len(batch)
            if counts:
                self.store.add_policy_hits(
                    [
                        (z, t, a, int(n), first, last)
                        for (z, t, a), (n, first, last) in counts.items()
                    ]
                )
                for (z, _t, a), (n, _f, _l) in counts.items():
                    self.zone_hits[z] = self.zone_hits.get(z, 0) + int(n)
                    self.actions[(z, a)] = self.actions.get((z, a), 0) + int(n)
            for listener in self.hit_listeners:
                listener(hits)
        except Exception as e:  # disk full, locked...: lose this batch, keep serving
            self.failed += len(batch)
            log.error("query log: could not write %d events: %s", len(batch), e)

    def _maybe_prune(self) -> None:
        now = time.time()
        if not self.retention_days or now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        try:
            n = self.store.prune_queries(now - self.retention_days * 86400)
            if n:
                log.info("query log: pruned %d rows older than %d days", n, self.retention_days)
        except Exception as e:
            log.error("query log: prune failed: %s", e)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_flag.set()
        self.join(timeout)
        if self.zone_hits:
            log.info(
                "policy hits since start: %s",
                ", ".join(f"{z} {n}" for z, n in sorted(self.zone_hits.items())),
            )


def deque_source(q: EventQueue) -> Callable[[float], list[Event]]:
    """Source for an in-process queue: sleep, then drain (batches, not a busy loop)."""

    def source(timeout: float) -> list[Event]:
        if timeout:
            time.sleep(timeout)  # stop() may wait up to one interval; that is fine
        return q.drain()

    return source


def mp_source(mpq: Any) -> Callable[[float], list[Event]]:
    """Source for event batches sent by worker processes over a multiprocessing queue."""

    def source(timeout: float) -> list[Event]:
        out: list[Event] = []
        try:
            out.extend(mpq.get(timeout=timeout) if timeout else mpq.get_nowait())
            while len(out) < DRAIN_MAX:
                out.extend(mpq.get_nowait())
        except queue.Empty:
            pass
        return out

    return source


class EventForwarder(threading.Thread):
    """In a worker process: move event batches from the local queue to the parent."""

    def __init__(self, q: EventQueue, mpq: Any, interval: float) -> None:
        super().__init__(name="mamori-event-forwarder", daemon=True)
        self.q = q
        self.mpq = mpq
        self.interval = interval
        self._stop_flag = threading.Event()

    def run(self) -> None:
        lower_thread_priority()
        while not self._stop_flag.wait(self.interval):
            self._send()
        self._send()

    def _send(self) -> None:
        while batch := self.q.drain():
            try:
                self.mpq.put_nowait(batch)
            except queue.Full:
                self.q.dropped += len(batch)

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(5.0)
