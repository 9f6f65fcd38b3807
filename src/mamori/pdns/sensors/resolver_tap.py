"""The resolver's own sensor: upstream answers (cache misses) become observations.

The DNS loop only appends (time, wire answer) to a bounded ``AnswerTap``;
this thread drains it every ``[pdns] flush_interval`` seconds, parses the
answers (dnspython, off the loop), aggregates them and writes one batch.
What was resolved is kept, never who asked.
"""

from __future__ import annotations

import logging
import threading
import time

from mamori.pdns.aggregate import Aggregator
from mamori.resolver.events import AnswerTap
from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.threads import lower_thread_priority

log = logging.getLogger(__name__)
COMPACT_EVERY = 3600.0


class TapWriter(threading.Thread):
    def __init__(
        self,
        tap: AnswerTap,
        store: PdnsSQLite,
        sensor: str,
        flush_interval: float,
        keep_nxdomain: bool = True,
        retention_days: int = 0,
    ) -> None:
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

    def run(self) -> None:
        lower_thread_priority()
        while not self._stop_flag.wait(self.flush_interval):
            self.collect()
            self._maybe_compact()
        self.collect()

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
        while batch := self.tap.drain():
            for when, data in batch:
                added = self.agg.add_answer(data, int(when), self.sensor)
                if added is None:
                    self.malformed += 1
                else:
                    self.observations += added[0]
        try:
            self.agg.flush(self.store)
        except Exception as e:  # disk full, locked ...: this batch is lost, serving goes on
            self.failed += 1
            self.agg = Aggregator(self.agg.keep_nxdomain)
            log.error("passive DNS: could not write a batch: %s", e)
