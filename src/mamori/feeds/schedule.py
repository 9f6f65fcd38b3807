"""Feed updates inside `mamori serve`: each enabled feed every `refresh` seconds.

An update runs in a thread (network and parsing); the compiled zone file it
writes is picked up by the zone file watcher, which reloads the policy beside
the running one. The datasets uniting an updated feed are compiled after it
(and all of them once at start). A feed whose compiled zone is missing (first start) or older
than its refresh interval is updated at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from mamori.config import Config, feed_zone
from mamori.feeds.parsers import FeedError, FeedUnreachableError
from mamori.feeds.sources import compile_datasets, update

log = logging.getLogger(__name__)

TICK = 5.0
RETRY_UNREACHABLE = 300.0  # a feed never fetched (offline at first start): next try


async def run_feeds(current: Callable[[], Config]) -> None:
    last: dict[str, float] = {}
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
            last[feed.name] = time.time()
            try:
                result = await asyncio.to_thread(update, feed, cfg.store)
            except FeedUnreachableError as e:
                unreachable.append(str(e).removeprefix(f"feed {feed.name}: "))
                last[feed.name] = time.time() - feed.refresh + min(feed.refresh, RETRY_UNREACHABLE)
            except FeedError as e:
                log.error("feed %s refused, last good version kept: %s", feed.name, e)
            except Exception:  # a bug costs this update, never the service
                log.exception("feed %s: update failed", feed.name)
            else:
                log.info("feed %s", result.summary())
                updated.add(feed.name)
        if unreachable:  # one line for all (typically: no internet access)
            log.warning(
                "%d feed(s) not reachable and never fetched, skipped (next try in %ds): %s",
                len(unreachable),
                RETRY_UNREACHABLE,
                "; ".join(unreachable),
            )
        if updated or (first and cfg.datasets):
            try:
                for name, serial, changed, n in await asyncio.to_thread(
                    compile_datasets, cfg, None if first else updated
                ):
                    if changed:
                        log.info("dataset %s: %d entries, serial %d", name, n, serial)
            except Exception:
                log.exception("datasets: compiling failed (previous zones kept)")
        first = False
        await asyncio.sleep(TICK)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0  # never compiled: due now
