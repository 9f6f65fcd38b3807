"""Removing a console feed while an update of it runs (the settings API and the
feed locks of ``mamori serve``, on one event loop as in the service)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mamori.config import FeedConfig, feed_zone
from mamori.config.load import load_effective
from mamori.control.view import Runtime
from mamori.feeds import sources
from mamori.feeds.dataset import FeedDB, db_path
from mamori.feeds.schedule import FeedLocks
from mamori.feeds.sources import cache_dir, update
from mamori.web.settings_api import Settings


def test_a_feed_removed_during_its_update_starts_empty_when_added_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update that was running records the feed's entries after the removal's
    reload; the removal waits for it, so what it forgets includes them."""
    conf = tmp_path / "m.toml"
    conf.write_text(f'[store]\npath = "{tmp_path / "store" / "mamori.sqlite"}"\n')
    current = [load_effective(str(conf), resolver=False, quiet=True)[0]]
    rt = Runtime()
    rt.config_source = lambda: current[0]

    async def reload() -> None:
        current[0] = load_effective(str(conf), resolver=False, quiet=True)[0]

    rt.reload = reload
    locks = FeedLocks()
    rt.feed_lock = locks.lock
    settings = Settings(current[0], rt)

    def rows() -> int:
        with FeedDB(db_path(current[0].store.path)) as db:
            return len(db.listed(["up"]))

    async def scenario() -> None:
        body = {"name": "up", "format": "domains", "category": "phishing"}
        await settings.add_feed("t", "", body, b"bad.example\nworse.example\n")
        feed = next(f for f in current[0].feeds if f.name == "up")
        store = current[0].store
        # the update has read its (uploaded) file already; the removal deletes it
        got = sources.read(feed, cache_dir(store))
        monkeypatch.setattr(sources, "read", lambda *_a, **_k: got)
        async with locks.lock("up"):  # its update is running (as FeedLocks.update holds it)
            removal = asyncio.create_task(settings.remove_feed("t", "", "up"))
            deadline = time.monotonic() + 20
            while any(f.name == "up" for f in current[0].feeds):  # the removal's reload
                assert time.monotonic() < deadline and not removal.done(), removal
                await asyncio.sleep(0.02)
            # (without the wait, the removal's forgetting is over in a moment)
            for _ in range(50):
                if removal.done():
                    break
                await asyncio.sleep(0.02)
            # the running update records its entries now, after the reload
            await asyncio.to_thread(update, feed, store)
            assert rows() == 2
        await asyncio.wait_for(removal, 20)

    asyncio.run(scenario())
    assert rows() == 0
    zone = feed_zone(FeedConfig(name="up"), current[0].store).file
    assert zone is not None and not zone.exists()
