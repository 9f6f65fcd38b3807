"""The resolver's own sensor: upstream answers (cache misses) become observations.

The DNS loop only appends (time, wire answer) to a bounded ``AnswerTap``;
this thread drains it every ``[pdns] flush_interval`` seconds, parses the
answers (dnspython, off the loop), aggregates them and writes one batch.
What was resolved is kept, never who asked.

Crash accounting (store/runs.py, table ``tap_runs`` of the passive DNS store):
answers received (drained or waiting in the tap) and committed, noted with
every batch and, between batches, every ``SAMPLE_EVERY`` seconds in
``<pdns db>-answers``; at start, the answers a crashed run lost are logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from mamori.pdns.aggregate import Aggregator
from mamori.resolver.events import AnswerTap
from mamori.store.base import WriterMark
from mamori.store.pdns_base import PdnsStore
from mamori.store.runs import ReceivedNote
from mamori.threads import lower_thread_priority

log = logging.getLogger(__name__)
COMPACT_EVERY = 3600.0
SAMPLE_EVERY = 0.1  # seconds between notes of the answers received (crash accounting)


class TapWriter(threading.Thread):
    def __init__(
        self,
        tap: AnswerTap,
        store: PdnsStore,
        sensor: str,
        flush_interval: float,
        keep_nxdomain: bool = True,
        retention_days: int = 0,
        note: Path | None = None,
    ) -> None:
        """*note*: the file noting answers received between commits (crash accounting;
        default: ``<SQLite store>-answers``)."""
        super().__init__(name="mamori-pdns-tap", daemon=True)
        self.tap = tap
        self.store = store
        self.sensor = sensor
        self.flush_interval = flush_interval
        self.agg = Aggregator(keep_nxdomain)
        self.observations = 0
        self.malformed = 0
        self.failed = 0
        self.retention_days = retention_days
        self._compacted = 0.0
        self._stop_flag = threading.Event()
        self.received = 0  # answers drained from the tap since start
        self.committed = 0  # answers whose observations are committed
        self.failed_answers = 0  # answers of batches the store refused
        self.run_id = 0
        self.lost_at_last_crash = 0
        if note is None:
            path = getattr(store, "path")  # noqa: B009 (the SQLite store's file)
            note = path.with_name(path.name + "-answers")
        self.note = ReceivedNote(note)

    def begin(self) -> None:
        """Record this run; log what the previous one lost if it crashed (before start)."""
        try:
            self.run_id, last = self.store.begin_run(os.getpid(), self.note.read())
        except Exception as e:
            log.error("passive DNS: cannot record the tap's run: %s", e)
            return
        self.note.start(self.run_id)
        if last is not None and not last.clean:
            self.lost_at_last_crash = last.lost
            log.warning(
                "passive DNS: the last run (pid %d) did not stop cleanly: %d upstream answers"
                " it had received were not written (lost); answers after its last note are"
                " not counted",
                last.pid,
                last.lost,
            )

    def _mark(self, pending: int) -> WriterMark | None:
        if not self.run_id:
            return None
        received = self.received + len(self.tap.items)
        return WriterMark(self.run_id, received, self.committed + pending, self.failed_answers)

    def run(self) -> None:
        lower_thread_priority()
        tick = min(SAMPLE_EVERY, self.flush_interval)
        due = time.monotonic() + self.flush_interval
        while not self._stop_flag.wait(tick):
            self.note.update(self.received + len(self.tap.items))
            if time.monotonic() >= due:
                self.collect()
                self._send_kept()
                self._maybe_compact()
                due = time.monotonic() + self.flush_interval
        self.collect()
        mark = self._mark(0)
        if mark is not None:
            try:
                self.store.end_run(mark)
            except Exception as e:
                log.error("passive DNS: cannot mark the tap's clean stop: %s", e)

    def _send_kept(self) -> None:
        """A ClickHouse store's spooled batches go out on the timer, also while no
        answers arrive (the store paces its attempts while the server is away)."""
        drain = getattr(self.store, "drain", None)  # only a store with a spool has one
        if drain is None:
            return
        try:
            drain()
        except Exception as e:  # the next tick tries again
            log.error("passive DNS: kept batches not sent: %s", e)

    def _maybe_compact(self) -> None:
        """Retention: once an hour, drop tuples older than ``retention_days``."""
        now = time.time()
        if not self.retention_days or now - self._compacted < COMPACT_EVERY:
            return
        self._compacted = now
        try:
            tuples, names = self.store.compact(int(now - self.retention_days * 86400))
        except Exception as e:  # a locked store: next hour
            log.error("passive DNS: compaction failed: %s", e)
            return
        if tuples:
            log.info("passive DNS: retention dropped %d tuples, %d names", tuples, names)

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(30)

    def collect(self) -> None:
        """Parse what the tap holds and write it as one batch."""
        pending = 0
        while batch := self.tap.drain():
            self.received += len(batch)
            pending += len(batch)
            for when, data in batch:
                added = self.agg.add_answer(data, int(when), self.sensor)
                if added is None:
                    self.malformed += 1
                else:
                    self.observations += added[0]
        try:
            self.agg.flush(self.store, mark=self._mark(pending))
            self.committed += pending
        except Exception as e:  # disk full, locked ...: this batch is lost, serving goes on
            self.failed += 1
            self.failed_answers += pending
            self.agg = Aggregator(self.agg.keep_nxdomain)
            log.error("passive DNS: could not write a batch: %s", e)
