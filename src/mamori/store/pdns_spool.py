"""Batches kept on local disk while ClickHouse is down or slow, sent in order later.

One file per batch (``<nanoseconds>-<pid>.batch``: zlib-compressed JSON), written
atomically (``atomicfile``): a crash leaves a whole batch or none. Several processes
may keep batches in one spool (``mamori serve`` and a ``mamori pdns ingest``); only the
one holding the spool's lock (``flock`` on ``.lock``) sends them, so no batch is in
flight twice. A batch the server refuses is moved to ``rejected/`` (``set_aside``),
never sent again: it does not hold up the batches behind it. The directory is bounded
(*limit* bytes): a batch that does not fit is refused, counted and logged, and the
caller decides (the passive DNS store drops it: DNS is never held up).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mamori.atomicfile import replacing_bytes

log = logging.getLogger(__name__)
SUFFIX = ".batch"


class Spool:
    """*directory*: the spool's own directory; *limit*: its bound in bytes; *label*: whose
    batches these are, as the log messages say it ("passive DNS", "query log")."""

    def __init__(self, directory: Path, limit: int, label: str = "passive DNS") -> None:
        self.dir = directory
        self.limit = limit
        self.label = label
        self.dropped = 0  # batches refused: the bound was reached
        self.dropped_items = 0  # their tuples
        self.rejected = 0  # batches the server refused: moved to rejected/ (set_aside)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bytes = sum(_size(f) for f in self.files())
        self._last = 0

    def files(self) -> list[Path]:
        """The batches waiting, oldest first."""
        return sorted(p for p in self.dir.glob("*" + SUFFIX) if p.stem[:1].isdigit())

    def __len__(self) -> int:
        return len(self.files())

    def append(self, batch: dict[str, Any], items: int = 0) -> bool:
        """Keep *batch* (JSON-able) after the others; False (counted, logged) when the
        bound would be passed. Raises OSError (disk full, permissions)."""
        data = zlib.compress(json.dumps(batch, separators=(",", ":")).encode(), 1)
        if self.bytes + len(data) > self.limit:
            self.dropped += 1
            self.dropped_items += items
            log.error(
                "%s: spool %s is full (%d of %d bytes): a batch of %d items is"
                " dropped (%d batches dropped so far)",
                self.label, self.dir, self.bytes, self.limit, items, self.dropped,
            )  # fmt: skip
            return False
        self._last = max(time.time_ns(), self._last + 1)  # names sort in write order
        with replacing_bytes(self.dir / f"{self._last:020d}-{os.getpid()}{SUFFIX}", 0o600) as f:
            f.write(data)
        self.bytes += len(data)
        return True

    @contextlib.contextmanager
    def sending(self) -> Iterator[bool]:
        """Hold the spool's lock while sending; yields False (send nothing) when another
        process holds it."""
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def read(self, path: Path) -> dict[str, Any]:
        """A kept batch. Raises OSError, ValueError (a damaged file)."""
        out: dict[str, Any] = json.loads(zlib.decompress(path.read_bytes()))
        return out

    def rewrite(self, path: Path, batch: dict[str, Any]) -> None:
        """Replace the kept batch *path* by *batch* (``forget-client``), atomically, in
        its place in the order. Call holding ``sending()``. Raises OSError."""
        data = zlib.compress(json.dumps(batch, separators=(",", ":")).encode(), 1)
        with replacing_bytes(path, 0o600) as f:
            f.write(data)

    def remove(self, path: Path) -> None:
        self.bytes -= _size(path)
        path.unlink(missing_ok=True)

    def set_aside(self, path: Path) -> None:
        """Move a batch the server refuses (or a damaged one) to ``rejected/``, out of
        the way of the batches behind it, kept for a person to look at; counted in
        ``rejected``."""
        self.rejected += 1
        self.bytes -= _size(path)
        (self.dir / "rejected").mkdir(exist_ok=True)
        path.rename(self.dir / "rejected" / path.name)


def usage(directory: Path) -> tuple[int, int]:
    """(batches, bytes) waiting in the spool *directory* (0, 0 when it does not exist):
    read from the disk, so any process of the node sees them."""
    files = [p for p in directory.glob("*" + SUFFIX) if p.stem[:1].isdigit()]
    return len(files), sum(_size(f) for f in files)


def written_by(directory: Path, pid: int, since_ns: int) -> tuple[list[Path], list[Path]]:
    """The batches process *pid* wrote into the spool *directory* at or after *since_ns*
    (``time.time_ns()``): (still waiting, set aside in ``rejected/``), oldest first."""

    def mine(where: Path) -> list[Path]:
        out = []
        for p in sorted(where.glob("*" + SUFFIX)):
            ns, _, who = p.stem.partition("-")
            if ns.isdigit() and who == str(pid) and int(ns) >= since_ns:
                out.append(p)
        return out

    return mine(directory), mine(directory / "rejected")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
