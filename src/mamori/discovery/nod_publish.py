"""Newly observed domains published: the policy zone, the DNSBL entries, "continue".

Files in ``<store dir>/nod/`` (``config.nod_dir``):

* ``<zone>rpz`` (``nod.mamori.rpz``): the managed policy zone ``[nod] zone``
  (rewritten only when its rules change; the control plane compiles it like a
  feed's zone; named after the zone, so a renamed zone starts a file of its own);
* ``nod.entries``: the DNSBL's entries, each with its age code (``[nod] dnsbl_zone``);
* ``nod.sqlite``: ``current`` (the new domains of the last refresh: domain, first
  seen) and ``exceptions`` (domain, until, client, created: the names a user chose
  to continue to from the block page's warning).

"Continue" (``[nod] action = "warn"``) is per registrable domain, for everyone, for
``[nod] continue_for`` seconds: the domain leaves the NOD zone (and only that zone:
a feed that lists it still applies), and comes back at the first refresh after the
exception expired if it is still new then.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from mamori.atomicfile import write_atomic
from mamori.config import Config
from mamori.config.sections import nod_dir, nod_zone_file
from mamori.discovery.nod import NodView, entries_text, find_new, registrable, zone_lines
from mamori.feeds.publish.rpz import write_zone
from mamori.store.pdns_base import PdnsStore

log = logging.getLogger(__name__)

ZONE_TTL = 60  # seconds: a client asks again soon after "continue" or after a domain aged out
_SCHEMA = """
CREATE TABLE IF NOT EXISTS current (domain TEXT PRIMARY KEY, first_seen INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exceptions (
    domain TEXT PRIMARY KEY, until INTEGER NOT NULL, client TEXT NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
"""


class NodState:
    """``nod.sqlite``: the last refresh's new domains and the "continue" exceptions."""

    def __init__(self, cfg: Config) -> None:
        directory = nod_dir(cfg.store)
        directory.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.db = sqlite3.connect(directory / "nod.sqlite", timeout=10, check_same_thread=False)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> NodState:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def set_current(self, view: NodView) -> None:
        with self.db:
            self.db.execute("DELETE FROM current")
            rows = [(d.domain, d.first_seen) for d in view.domains]
            self.db.executemany("INSERT INTO current VALUES (?, ?)", rows)

    def first_seen(self, domain: str) -> int | None:
        """When a domain of the last refresh was first seen (None: not new then)."""
        row = self.db.execute("SELECT first_seen FROM current WHERE domain = ?", (domain,))
        hit = row.fetchone()
        return None if hit is None else int(hit[0])

    def exceptions(self, now: int) -> dict[str, int]:
        """domain -> until (UNIX seconds) of the exceptions in force at *now*."""
        rows = self.db.execute("SELECT domain, until FROM exceptions WHERE until > ?", (now,))
        return {str(d): int(u) for d, u in rows}

    def add_exception(self, domain: str, client: str, now: int) -> int:
        """Allow *domain* for ``[nod] continue_for`` seconds from *now*; the end (UNIX s)."""
        until = now + self.cfg.nod.continue_for
        with self.db:
            self.db.execute("DELETE FROM exceptions WHERE until <= ?", (now,))
            row = (domain, until, client, now)
            self.db.execute("INSERT OR REPLACE INTO exceptions VALUES (?, ?, ?, ?)", row)
        return until

    def write_zone(self, now: int) -> bool:
        """Rewrite the policy zone from ``current`` minus the exceptions; changed or not."""
        allowed = self.exceptions(now)
        domains = [str(d) for (d,) in self.db.execute("SELECT domain FROM current")]
        lines = zone_lines([d for d in domains if d not in allowed], self.cfg.nod.action,
                           self.cfg.blockpage.address)  # fmt: skip
        _serial, changed = write_zone(nod_zone_file(self.cfg), self.cfg.nod.zone, lines, ZONE_TTL)
        return changed


def refresh(
    cfg: Config, store: PdnsStore, now: int | None = None, observed: int | None = None
) -> tuple[NodView, bool]:
    """Compute what is new, write the zone and the DNSBL entries; (the view, whether the
    policy zone changed). *observed*: the store's first observation, when known."""
    now = int(time.time()) if now is None else now
    view = find_new(store, cfg.nod.window, cfg.nod.warmup_seconds, now, observed)
    with NodState(cfg) as state:
        state.set_current(view)
        changed = state.write_zone(now)
    entries = nod_dir(cfg.store) / "nod.entries"
    text = entries_text(view.domains, now)
    if _read(entries) != text:
        write_atomic(entries, text)
    return view, changed


def allow(cfg: Config, name: str, client: str, now: int | None = None) -> int | None:
    """ "Continue" from the block page: except *name*'s registrable domain from the NOD
    zone (when it is in it) and rewrite the zone. The exception's end (UNIX seconds),
    or None when the domain is not a new one."""
    now = int(time.time()) if now is None else now
    domain = registrable(name)
    if domain is None:
        return None
    with NodState(cfg) as state:
        if state.first_seen(domain) is None:
            return None
        until = state.add_exception(domain, client, now)
        state.write_zone(now)
    log.info("nod: %s allowed until %s (continued by %s)", domain,
             time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(until)), client)  # fmt: skip
    return until


def allowed_until(cfg: Config, name: str, now: int | None = None) -> int | None:
    """The end of the exception in force for *name*'s registrable domain, or None."""
    now = int(time.time()) if now is None else now
    domain = registrable(name)
    if domain is None or not (nod_dir(cfg.store) / "nod.sqlite").exists():
        return None
    with NodState(cfg) as state:
        return state.exceptions(now).get(domain)


def first_seen(cfg: Config, name: str) -> int | None:
    """When *name*'s registrable domain was first seen, if new at the last refresh."""
    domain = registrable(name)
    if domain is None or not (nod_dir(cfg.store) / "nod.sqlite").exists():
        return None
    with NodState(cfg) as state:
        return state.first_seen(domain)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


async def run_nod(
    current: Callable[[], Config],
    open_store: Callable[[], PdnsStore],
    zones_changed: Callable[[], Awaitable[None]],
) -> None:
    """In ``mamori serve``: refresh every ``[nod] refresh`` seconds (off the event loop)
    and have the policy zone compiled at once when it changed. Errors are logged and
    the last published zone keeps serving."""
    store: PdnsStore | None = None
    warned = False
    observed: int | None = None  # the store's first observation, once the warm-up is over
    try:
        while True:
            cfg = current()
            if cfg.nod.enabled:
                try:
                    if store is None:
                        store = await asyncio.to_thread(open_store)
                    view, changed = await asyncio.to_thread(refresh, cfg, store, None, observed)
                    if not view.warming:
                        observed = view.observed_since  # (a scan saved at every refresh)
                    if view.warming and not warned and view.warm_until is not None:
                        warned = True
                        end = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(view.warm_until))
                        log.info("nod: warming up until %s: no domain is new before", end)
                    if changed:
                        log.info("nod: %d newly observed domains", len(view.domains))
                        await zones_changed()
                except (OSError, sqlite3.Error) as e:
                    log.error("nod: refresh failed, previous zone serving: %s", e)
                except Exception:  # a bug must not end the refreshes: logged, tried again
                    log.exception("nod: refresh failed, previous zone serving")
            else:
                # turned off by a reload: a DNSBL still listening (its listener goes at the
                # next restart) answers nothing rather than ages that no longer move
                entries = nod_dir(cfg.store) / "nod.entries"
                if _read(entries):
                    await asyncio.to_thread(write_atomic, entries, "")
                    log.info("nod: turned off, its DNSBL entries emptied")
            await asyncio.sleep(cfg.nod.refresh)
    finally:
        if store is not None:
            store.close()
