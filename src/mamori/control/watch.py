"""Reload policy zones when their files change (no SIGHUP needed).

Each zone file is checked every ``[policy] watch_interval`` seconds by its
(inode, size, modification time). A change is acted on once the changed files
have been left alone for ``SETTLE`` seconds (at most ``watch_interval``), so a
file being written is not loaded half-way: a file last modified longer ago
than that is reloaded at the check that sees it; one modified just before the
check is looked at again ``SETTLE`` seconds after its last write. A change is
therefore picked up within ``watch_interval`` seconds (plus the time to
compile the zone). An editor's write-and-rename counts as a change.
``$INCLUDE``d files are not watched (send SIGHUP after changing one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from mamori.config import Config

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int, int] | tuple[str], ...]
SETTLE = 1.0  # seconds a changed file must stay untouched before it is loaded


def signature(paths: list[Path]) -> Signature:
    """(path, inode, size, mtime in ns) per file; (path,) for a missing one."""
    out: list[tuple[str, int, int, int] | tuple[str]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append((str(p),))  # missing for now: the running version keeps serving
            continue
        out.append((str(p), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def zone_files(cfg: Config) -> list[Path]:
    # Transferred zones are written by mamori itself (and reloaded by it).
    return [z.file for z in cfg.rpz if z.file is not None and not z.primary]


def _changed(now: Signature, last: Signature) -> list[tuple[str, int, int, int] | tuple[str]]:
    if len(now) != len(last):
        return list(now)
    return [a for a, b in zip(now, last, strict=True) if a != b]


def _quiet_for(entries: list[tuple[str, int, int, int] | tuple[str]], now: float) -> float:
    """Seconds since the newest write among *entries* (a missing file: long ago)."""
    newest = max((e[3] / 1e9 for e in entries if len(e) == 4), default=None)
    return float("inf") if newest is None else now - newest


async def watch_zone_files(
    current: Callable[[], Config],
    on_change: Callable[[], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.time,
) -> None:
    """Call *on_change* after a zone file of the current config changed and settled.

    *sleep* and *clock* (seconds; ``clock`` on the files' modification-time
    scale) are the event loop's and the system's unless a test gives others.
    """
    last = signature(zone_files(current()))
    while True:
        interval = current().policy.watch_interval
        await sleep(interval or 5.0)
        if not interval:
            continue
        now = signature(zone_files(current()))
        settle = min(SETTLE, interval)
        # Settled: untouched for `settle` by the files' own times, or unchanged
        # over a wait of that long (whatever their times say: a clock that differs).
        while now != last:
            quiet = _quiet_for(_changed(now, last), clock())
            if quiet >= settle:
                break
            await sleep(settle - max(quiet, 0.0))
            again = signature(zone_files(current()))
            if again == now:
                break
            now = again
        if now == last:
            continue
        changed = [e[0] for e in _changed(now, last)] or ["(list)"]
        log.info("policy zone file changed (%s): reloading zones", ", ".join(changed))
        last = now
        try:
            await on_change()
        except Exception:  # keep watching; the running policy keeps serving
            log.exception("zone reload after a file change failed")
