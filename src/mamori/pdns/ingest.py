"""``mamori pdns ingest``: packet captures into the passive DNS store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mamori.pdns.aggregate import Aggregator
from mamori.pdns.sensors.pcap import Counters, Reader
from mamori.store.pdns_sqlite import PdnsSQLite

FLUSH_TUPLES = 500_000  # ~100 MB of aggregated tuples in memory


@dataclass
class IngestResult:
    files: int = 0
    observations: int = 0
    tuples_written: int = 0
    nxdomain: int = 0
    counters: Counters = field(default_factory=Counters)

    def summary(self) -> str:
        c = self.counters
        return (
            f"{self.files} capture(s): {c.packets} packets, {c.responses} DNS responses"
            f" ({c.matched} matched to their query, {c.tcp_messages} DNS messages over TCP),"
            f" {self.observations} observations, {self.nxdomain} NXDOMAIN,"
            f" {self.tuples_written} tuples written; {c.malformed} malformed, {c.skipped}"
            " not DNS or not reassembled (IP fragments)"
        )


def ingest(
    paths: list[Path],
    store: PdnsSQLite,
    sensor: str,
    progress: Callable[[str, int, int | None], None] | None = None,
    keep_nxdomain: bool = True,
) -> IngestResult:
    out = IngestResult()
    agg = Aggregator(keep_nxdomain)
    for path in paths:
        reader = Reader()
        size = path.stat().st_size

        def report(done: int, name: str = path.name, total: int = size) -> None:
            if progress is not None:
                progress(name, done, total)

        for ts, *_addrs, data in reader.messages(path, report if progress else None):
            added = agg.add_answer(data, int(ts), sensor)
            if added is None:
                reader.counters.malformed += 1
                continue
            out.observations += added[0]
            out.nxdomain += added[1]
            if len(agg) >= FLUSH_TUPLES:
                out.tuples_written += agg.flush(store)
        if progress is not None:
            progress(path.name, size, size)
        out.files += 1
        total, this = out.counters, reader.counters
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(this, name))
    out.tuples_written += agg.flush(store)
    return out
