"""The resolver's own sensor: upstream answers (cache misses) become observations.

The DNS loop only appends (time, wire answer) to a bounded ``AnswerTap``;
this thread drains it every ``[pdns] flush_interval`` seconds, parses the
answers (dnspython, off the loop), aggregates them and writes one batch.
What was resolved is kept, never who asked.
"""

from __future__ import annotations

import logging
import threading

from mamori.pdns import model
from mamori.pdns.aggregate import Aggregator
from mamori.resolver.events import AnswerTap, lower_thread_priority
from mamori.store.pdns_sqlite import PdnsSQLite

log = logging.getLogger(__name__)


class TapWriter(threading.Thread):
    def __init__(
        self,
        tap: AnswerTap,
        store: PdnsSQLite,
        sensor: str,
        flush_interval: float,
        keep_nxdomain: bool = True,
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
        self._stop_flag = threading.Event()

    def run(self) -> None:
        lower_thread_priority()
        while not self._stop_flag.wait(self.flush_interval):
            self.collect()
        self.collect()

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(30)

    def collect(self) -> None:
        """Parse what the tap holds and write it as one batch."""
        while batch := self.tap.drain():
            for when, data in batch:
                try:
                    obs, nx = model.from_wire(data, int(when), self.sensor)
                except ValueError:
                    self.malformed += 1
                    continue
                self.agg.add(obs)
                self.observations += len(obs)
                if nx is not None:
                    self.agg.add_nxdomain(nx)
        try:
            self.agg.flush(self.store)
        except Exception as e:  # disk full, locked ...: this batch is lost, serving goes on
            self.failed += 1
            self.agg = Aggregator(self.agg.keep_nxdomain)
            log.error("passive DNS: could not write a batch: %s", e)
