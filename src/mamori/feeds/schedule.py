"""Feed updates inside `mamori serve`: each enabled feed every `refresh` seconds.

An update runs in a child process (``feeds/worker.py``: network, parsing and
the provenance store stay off the DNS loop and out of the server's memory);
the zone file it writes is compiled for the data plane at once (``on_updated``;
the zone file watcher would pick it up too). The datasets uniting an updated
feed are compiled after it (and all of them once at start, with every feed's
zone rewritten from its stored entries: a new version's compiler applies at
once, not at the feed's next update). A feed whose
compiled zone is missing (first start) or older than its refresh interval is
updated at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mamori.config import Config, feed_zone

log = logging.getLogger(__name__)

TICK = 5.0
RETRY_UNREACHABLE = 300.0  # a feed never fetched (offline at first start): next try
CHILD_TIMEOUT = 1800.0  # an update taking longer is stopped (and tried again later)


async def run_child(cfg: Config, *names: str) -> dict[str, Any]:
    """Run one worker; its JSON verdict (a crash or timeout: ok false)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mamori.feeds.worker",
        str(cfg.path),
        cfg.log.level,
        *names,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        verdict: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        verdict = {"ok": False, "unreachable": False, "error": f"worker exit {proc.returncode}"}
    return verdict


class FeedLocks:
    """One lock per feed: the scheduler and "refresh now" (console, REST API) never
    update the same feed twice at once (a second request waits for the first)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self.last: dict[str, float] = {}  # feed -> when its last update started

    def lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def update(self, current: Callable[[], Config], name: str) -> dict[str, Any]:
        """Update feed *name* now (after any update of it in progress), with the
        configuration in force then (*current*); its verdict. A feed removed or
        disabled meanwhile is not updated (``{"ok": False, "gone": True}``)."""
        async with self.lock(name):
            cfg = current()
            if not any(f.name == name and f.enabled for f in cfg.feeds):
                return {"ok": False, "gone": True, "error": f"feed {name} is gone or disabled"}
            self.last[name] = time.time()
            return await run_child(cfg, name)


async def run_feeds(
    current: Callable[[], Config],
    on_updated: Callable[[], Awaitable[None]] | None = None,
    locks: FeedLocks | None = None,
) -> None:
    """Update each enabled feed when due, forever. *on_updated* runs after updates that
    changed zone files (the control plane recompiles them at once; otherwise the zone
    file watcher picks them up). *locks*: shared with "refresh now"."""
    locks = locks if locks is not None else FeedLocks()
    last = locks.last
    first = True
    while True:
        cfg = current()
        updated: set[str] = set()
        unreachable: list[str] = []
        for feed in cfg.feeds:
            if not feed.enabled:
                continue
            zone = feed_zone(feed, cfg.store)
            assert zone.file is not None
            done = last.get(feed.name, _mtime(zone.file))
            if time.time() < done + feed.refresh:
                continue
            try:
                verdict = await locks.update(current, feed.name)
            except TimeoutError:
                log.error("feed %s: update took over %ds, stopped", feed.name, CHILD_TIMEOUT)
                continue
            except OSError:  # cannot start the worker: this update is lost, not the service
                log.exception("feed %s: update failed", feed.name)
                continue
            if verdict["ok"]:
                log.info("feed %s", verdict["summary"])
                _log_datasets(verdict)
                updated.add(feed.name)
            elif verdict.get("gone"):  # removed or disabled by a reload meanwhile
                continue
            elif verdict.get("unreachable"):
                unreachable.append(str(verdict["error"]).removeprefix(f"feed {feed.name}: "))
                last[feed.name] = time.time() - feed.refresh + min(feed.refresh, RETRY_UNREACHABLE)
            else:
                why = verdict["error"]
                log.error("feed %s refused, last good version kept: %s", feed.name, why)
        if unreachable:  # one line for all (typically: no internet access)
            log.warning(
                "%d feed(s) not reachable and never fetched, skipped (next try in %ds): %s",
                len(unreachable),
                RETRY_UNREACHABLE,
                "; ".join(unreachable),
            )
        if first and (cfg.datasets or cfg.feeds):  # at start: every feed zone, dataset once
            try:
                _log_datasets(await run_child(cfg))
            except TimeoutError:
                log.error("datasets: compiling took over %ds, stopped", CHILD_TIMEOUT)
        if (updated or first) and on_updated is not None:
            try:
                await on_updated()
            except Exception:  # the watcher will try again; the feeds go on
                log.exception("applying the updated feeds failed")
        first = False
        await asyncio.sleep(TICK)


def _log_datasets(verdict: dict[str, Any]) -> None:
    for name, serial, changed, n in verdict.get("feeds", []):
        if changed:
            log.info("feed %s: zone rewritten from %d entries, serial %d", name, n, serial)
    for name, serial, changed, n in verdict.get("datasets", []):
        if changed:
            log.info("dataset %s: %d entries, serial %d", name, n, serial)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0  # never compiled: due now
