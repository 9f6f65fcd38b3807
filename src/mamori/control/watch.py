"""Reload policy zones when their files change (no SIGHUP needed).

Each zone file is checked every ``[policy] watch_interval`` seconds by its
(inode, size, mtime). A change is acted on once the file has stayed the same
for one more interval, so a file being written is not loaded half-way; an
editor's write-and-rename counts as a change. ``$INCLUDE``d files are not
watched (send SIGHUP after changing one).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from mamori.config import Config

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int, int] | tuple[str], ...]


def signature(paths: list[Path]) -> Signature:
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


async def watch_zone_files(
    current: Callable[[], Config], on_change: Callable[[], Awaitable[None]]
) -> None:
    """Call *on_change* after a zone file of the current config changed and settled."""
    last = signature(zone_files(current()))
    pending: Signature | None = None
    while True:
        interval = current().policy.watch_interval
        await asyncio.sleep(interval or 5.0)
        if not interval:
            continue
        now = signature(zone_files(current()))
        if now == last:
            pending = None
        elif now == pending:  # unchanged for one interval: settled
            changed = [a[0] for a, b in zip(now, last, strict=False) if a != b] or ["(list)"]
            log.info("policy zone file changed (%s): reloading zones", ", ".join(changed))
            last, pending = now, None
            try:
                await on_change()
            except Exception:  # keep watching; the running policy keeps serving
                log.exception("zone reload after a file change failed")
        else:
            pending = now
