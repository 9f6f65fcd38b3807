"""``mamori pdns ingest``: packet captures into the passive DNS store.

Crash safety: every commit writes the aggregated tuples together with the
capture's position (how many of its DNS messages they cover, and whether the
capture is complete) in ONE transaction (SQLite; ClickHouse: one batch written
exactly once, the position last) (``pdns_ingest`` table). An
ingest killed at any point and run again skips the messages already committed
(they are read, not counted) and a complete capture is skipped whole, so nothing
is counted twice. A capture is known by its content (``file_identity``), not its
path: a renamed copy is the same capture; a capture that grew (still being
written) is a new one and is read again from the start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mamori.errors import StoreError
from mamori.pdns.aggregate import Aggregator
from mamori.pdns.sensors.pcap import Counters, Reader
from mamori.store.pdns_base import FileProgress, PdnsStore

FLUSH_TUPLES = 500_000  # ~100 MB of aggregated tuples in memory
COMMIT_EVERY = 100_000  # DNS messages between commits (what a crash makes read again)
_EDGE = 1 << 16  # bytes hashed at each end of a capture


def file_identity(path: Path) -> str:
    """A capture's identity: hex SHA-256 of its size, first and last 64 KiB (pcap and
    pcapng headers and timestamps make these differ between captures). Raises OSError."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        h = hashlib.sha256(str(size).encode() + b"\0" + f.read(_EDGE))
        if size > _EDGE:
            f.seek(max(_EDGE, size - _EDGE))
            h.update(f.read(_EDGE))
    return h.hexdigest()


@dataclass
class IngestResult:
    files: int = 0
    observations: int = 0
    tuples_written: int = 0
    nxdomain: int = 0
    already: int = 0  # captures complete in the store before this run (skipped)
    resumed: int = 0  # DNS messages committed by an interrupted run (read, not counted)
    counters: Counters = field(default_factory=Counters)

    def summary(self) -> str:
        c = self.counters
        before = ""
        if self.already:
            before += f"{self.already} capture(s) already ingested (skipped); "
        if self.resumed:
            before += f"resumed after {self.resumed} DNS messages committed before; "
        return before + (
            f"{self.files} capture(s): {c.packets} packets, {c.responses} DNS responses"
            f" ({c.matched} matched to their query, {c.tcp_messages} DNS messages over TCP),"
            f" {self.observations} observations, {self.nxdomain} NXDOMAIN,"
            f" {self.tuples_written} tuples written; {c.malformed} malformed, {c.skipped}"
            " not DNS or not reassembled (IP fragments)"
        )


def ingest(
    paths: list[Path],
    store: PdnsStore,
    sensor: str,
    progress: Callable[[str, int, int | None], None] | None = None,
    keep_nxdomain: bool = True,
    commit_every: int = COMMIT_EVERY,
) -> IngestResult:
    """Read *paths* (pcap/pcapng) into *store*, committing every *commit_every* DNS
    messages (and at each capture's end) with the capture's position; a capture
    already complete is skipped, one interrupted resumes after its last commit.
    Raises CaptureError (not a capture), OSError, and StoreError (the store cannot tell
    whether a capture was ingested before, e.g. ClickHouse is away: that capture and
    the ones after it are not read, nothing is counted twice)."""
    out = IngestResult()
    agg = Aggregator(keep_nxdomain)
    for path in paths:
        ident = file_identity(path)
        try:
            done, complete = store.ingested(ident)
        except StoreError as e:  # ClickHouse away, and the spool knows nothing of it
            raise StoreError(
                f"cannot tell whether {path} was already ingested: {e}; nothing of it was"
                " read: try again when the server is back"
            ) from e
        size = path.stat().st_size
        if complete:
            out.already += 1
            out.files += 1
            continue
        reader = Reader()

        def report(done: int, name: str = path.name, total: int = size) -> None:
            if progress is not None:
                progress(name, done, total)

        def position(
            n: int, whole: bool, p: Path = path, id_: str = ident, size: int = size
        ) -> FileProgress:
            return FileProgress(id_, str(p), size, n, whole)

        n = last_commit = 0
        for ts, *_addrs, data in reader.messages(path, report if progress else None):
            n += 1
            if n <= done:
                out.resumed += 1
                continue
            added = agg.add_answer(data, int(ts), sensor)
            if added is None:
                reader.counters.malformed += 1
            else:
                out.observations += added[0]
                out.nxdomain += added[1]
            if len(agg) >= FLUSH_TUPLES or n - last_commit >= commit_every:
                out.tuples_written += agg.flush(store, position(n, False))
                last_commit = n
        out.tuples_written += agg.flush(store, position(n, True))
        if progress is not None:
            progress(path.name, size, size)
        out.files += 1
        total, this = out.counters, reader.counters
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(this, name))
    return out
