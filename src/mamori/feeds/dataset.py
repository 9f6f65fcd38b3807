"""Provenance of every listed entry, and datasets as unions of feeds.

One SQLite file beside the store (``<store dir>/feeds/feeds.sqlite``, WAL)
keeps, per feed and entry: when it was first listed, when it left the source
(``delisted``), whether it is in the feed's output now (``listed``), and the
reason/reference the source gave. "Last seen in the feed" is the feed's last
good update for an entry still in the source, its ``delisted`` time otherwise,
so an unchanged update writes nothing per entry.

Expiry: an entry that leaves its source stays listed for the feed's
``delist_after`` seconds (0: it goes at once); then it is no longer listed.
A dataset lists what any of its feeds lists. Rows delisted for more than
``HISTORY`` are deleted.

Writers take ``store_lock`` (``<store dir>/feeds/.lock``): a feed's update
(record, then its zone), the rewrite of the feed and dataset zones, and the
removal of a feed run one at a time across processes, so a zone is always
written from the newest entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mamori.errors import StoreError
from mamori.feeds.normalize import Entry

HISTORY = 90 * 86400  # keep delisted entries' provenance this long
LIST, ALLOW = 0, 1  # rule: a listed entry, an allow (exception) rule

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    feed TEXT NOT NULL,
    rule INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    first_listed INTEGER NOT NULL,
    delisted INTEGER,
    listed INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    reference TEXT NOT NULL DEFAULT '',
    modifiers TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (feed, rule, kind, value, modifiers)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_value ON entries (value);
CREATE TABLE IF NOT EXISTS skips (
    feed TEXT NOT NULL,
    reason TEXT NOT NULL,
    lines INTEGER NOT NULL,
    line INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS skips_feed ON skips (feed);
CREATE TABLE IF NOT EXISTS updates (
    feed TEXT NOT NULL,
    at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    source TEXT NOT NULL,
    summary TEXT NOT NULL,
    entries INTEGER NOT NULL DEFAULT 0,
    added INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    serial INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS updates_feed ON updates (feed, at);
CREATE TABLE IF NOT EXISTS rejects (
    feed TEXT NOT NULL,
    line INTEGER NOT NULL,
    text TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rejects_feed ON rejects (feed);
"""


@dataclass(frozen=True)
class Change:
    added: list[Entry]
    removed: list[Entry]
    listed: list[Entry]  # everything listed now (the source's entries + lingering ones)
    allowed: list[Entry]  # allow rules now


@dataclass(frozen=True)
class Provenance:
    feed: str
    rule: str  # "list" or "allow"
    kind: str
    value: str
    first_listed: int
    last_seen: int
    delisted: int | None
    listed: bool
    reason: str
    reference: str
    modifiers: str = ""  # the entry's adblock modifiers (feeds.modifiers), "" for none


def db_path(store_path: Path) -> Path:
    return store_path.parent / "feeds" / "feeds.sqlite"


@contextlib.contextmanager
def store_lock(store_path: Path) -> Iterator[None]:
    """Hold the feed store's writer lock (``flock`` on ``<store dir>/feeds/.lock``),
    waiting for it as long as another process holds it.

    Everything that reads entries and writes zones from them (``mamori serve``'s
    feed children, ``mamori feeds update``, the settings API's feed removal) runs
    under it: two writers reading the entries, then writing the same dataset
    zone one after the other, would otherwise let the older entries win (a
    removed entry listed again, with a higher serial, until the feed's next
    update). The kernel releases it when its holder exits, however it exits.

    Opened read-only (created 0644 if missing): a lock file created by another
    user (root running ``mamori feeds update`` on the service's store) does not
    lock the service out. Raises StoreError, naming the file, when it cannot be
    opened or created.
    """
    path = db_path(store_path).with_name(".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StoreError(f"cannot open the feed store's lock {path}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # (closing releases the lock)


class FeedDB:
    def __init__(self, path: Path) -> None:
        """Open (or create) the file; StoreError naming it when that fails (a
        directory that cannot be made, a file the user may not write)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the feed store {path}: {e}") from e
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            self.db.close()
            raise StoreError(f"cannot open the feed store {path}: {e}") from e

    def _migrate(self) -> None:
        """Files written before entries had modifiers: the column joins the key."""
        cols = [r[1] for r in self.db.execute("PRAGMA table_info(entries)")]
        if not cols or "modifiers" in cols:
            return
        old = ", ".join(cols)
        try:
            self.db.executescript(
                "BEGIN; ALTER TABLE entries RENAME TO entries_old;"
                " DROP INDEX IF EXISTS entries_value;"
                + _SCHEMA.split(";", 1)[0]  # CREATE TABLE entries
                + f"; INSERT INTO entries ({old}) SELECT {old} FROM entries_old;"
                " DROP TABLE entries_old; COMMIT;"
            )
        except sqlite3.Error:
            self.db.rollback()
            raise

    def close(self) -> None:
        self.db.close()

    def forget(self, feed: str) -> int:
        """Remove everything kept about *feed* (entries, skipped and rejected lines,
        update history): a feed removed and added again starts empty. Rows removed."""
        with self.db:
            return sum(
                self.db.execute(f"DELETE FROM {table} WHERE feed = ?", (feed,)).rowcount
                for table in ("entries", "skips", "updates", "rejects")
            )

    def __enter__(self) -> FeedDB:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- writing
    def record(
        self,
        feed: str,
        entries: Iterable[Entry],
        exceptions: Iterable[Entry] = (),
        delist_after: int = 0,
        now: int | None = None,
    ) -> Change:
        """A good update of *feed*: the source lists *entries* (and *exceptions*) now."""
        now = int(time.time()) if now is None else now
        added: list[Entry] = []
        removed: list[Entry] = []
        out: dict[int, list[Entry]] = {LIST: [], ALLOW: []}
        with self.db:
            for rule, items in ((LIST, entries), (ALLOW, exceptions)):
                old = {
                    (k, v, m): (delisted, listed)
                    for k, v, m, delisted, listed in self.db.execute(
                        "SELECT kind, value, modifiers, delisted, listed FROM entries"
                        " WHERE feed = ? AND rule = ?",
                        (feed, rule),
                    )
                }
                new: dict[tuple[str, str, str], Entry] = {}
                for e in items:
                    new.setdefault((e.kind, e.value, e.modifiers), e)
                inserts, back, gone, expired = [], [], [], []
                for key, e in new.items():
                    state = old.get(key)
                    if state is None:
                        inserts.append((feed, rule, *key, now, e.reason, e.reference))
                        added.append(e)
                    elif state[0] is not None or not state[1]:  # back in the source
                        back.append((feed, rule, *key))
                        if not state[1]:
                            added.append(e)
                    out[rule].append(e)
                for key, (delisted, listed) in old.items():
                    if key in new or not listed:
                        continue
                    left = now if delisted is None else delisted
                    if delisted is None:
                        gone.append((now, feed, rule, *key))
                    kind, value, mods = key
                    if now - left < delist_after:
                        out[rule].append(Entry(kind, value, modifiers=mods))  # lingers
                    else:
                        expired.append((feed, rule, *key))
                        removed.append(Entry(kind, value, modifiers=mods))
                self.db.executemany(
                    "INSERT INTO entries (feed, rule, kind, value, modifiers, first_listed,"
                    " listed, reason, reference) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                    inserts,
                )
                where = " WHERE feed = ? AND rule = ? AND kind = ? AND value = ? AND modifiers = ?"
                self.db.executemany("UPDATE entries SET delisted = NULL, listed = 1" + where, back)
                self.db.executemany("UPDATE entries SET delisted = ?" + where, gone)
                self.db.executemany("UPDATE entries SET listed = 0" + where, expired)
            self.db.execute(
                "DELETE FROM entries WHERE feed = ? AND listed = 0 AND delisted < ?",
                (feed, now - HISTORY),
            )
        return Change(added, removed, out[LIST], out[ALLOW])

    def log_update(
        self,
        feed: str,
        ok: bool,
        source: str,
        summary: str,
        counts: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0),
        rejects: list[tuple[int, str, str]] | None = None,
        now: int | None = None,
        skipped: list[tuple[int, str, str]] | None = None,
    ) -> None:
        """Remember an update (good or refused); *counts*: entries, added, removed,
        rejected, serial. *rejects* replaces the feed's list of rejected lines,
        *skipped* (line, text, reason: valid lines not applied) its skip counts."""
        at = int(time.time()) if now is None else now
        with self.db:
            self.db.execute(
                "INSERT INTO updates (feed, at, ok, source, summary, entries, added, removed,"
                " rejected, serial) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (feed, at, int(ok), source, summary, *counts),
            )
            if rejects is not None:
                self.db.execute("DELETE FROM rejects WHERE feed = ?", (feed,))
                self.db.executemany(
                    "INSERT INTO rejects VALUES (?, ?, ?, ?)",
                    [(feed, no, text[:500], why) for no, text, why in rejects[:1000]],
                )
            if skipped is not None:
                count: dict[str, int] = {}
                first: dict[str, tuple[int, str]] = {}
                for no, text, why in skipped:
                    count[why] = count.get(why, 0) + 1
                    first.setdefault(why, (no, text[:500]))
                self.db.execute("DELETE FROM skips WHERE feed = ?", (feed,))
                self.db.executemany(
                    "INSERT INTO skips VALUES (?, ?, ?, ?, ?)",
                    [(feed, why, n, *first[why]) for why, n in count.items()],
                )

    # ------------------------------------------------------------- reading
    def listed(self, feeds: Iterable[str], rule: int = LIST) -> list[Entry]:
        """What the feeds list now, de-duplicated (a dataset's content)."""
        names = list(feeds)
        marks = ",".join("?" * len(names))
        rows = self.db.execute(
            f"SELECT DISTINCT kind, value, modifiers FROM entries WHERE listed = 1 AND rule = ?"
            f" AND feed IN ({marks})",
            (rule, *names),
        )
        return [Entry(k, v, modifiers=m) for k, v, m in rows]

    def last_good(self, feed: str) -> int | None:
        row = self.db.execute(
            "SELECT max(at) FROM updates WHERE feed = ? AND ok = 1", (feed,)
        ).fetchone()
        return row[0] if row and row[0] is not None else None

    def provenance(self, value: str) -> list[Provenance]:
        """Every feed's row for *value* (a name, address or network)."""
        rows = self.db.execute(
            "SELECT feed, rule, kind, value, first_listed, delisted, listed, reason, reference,"
            " modifiers FROM entries WHERE value = ? ORDER BY feed, rule, modifiers",
            (value,),
        ).fetchall()
        seen: dict[str, int | None] = {}
        return [self._prov(r, seen) for r in rows]

    def rows(self, feeds: Iterable[str], allow: bool = False) -> Iterator[Provenance]:
        """The listed entries of *feeds* with their provenance, by value (then kind,
        modifiers, feed); with *allow*, the allow rules too (``Provenance.rule``)."""
        names = list(feeds)
        marks = ",".join("?" * len(names))
        rules = f"({LIST}, {ALLOW})" if allow else f"({LIST})"
        seen: dict[str, int | None] = {}
        for r in self.db.execute(
            "SELECT feed, rule, kind, value, first_listed, delisted, listed, reason, reference,"
            f" modifiers FROM entries WHERE listed = 1 AND rule IN {rules} AND feed IN ({marks})"
            " ORDER BY value, kind, rule, modifiers, feed",
            names,
        ):
            yield self._prov(r, seen)

    def updates(self, feed: str, limit: int = 10) -> list[tuple[int, bool, str, str]]:
        return [
            (at, bool(ok), source, summary)
            for at, ok, source, summary in self.db.execute(
                "SELECT at, ok, source, summary FROM updates WHERE feed = ?"
                " ORDER BY at DESC, rowid DESC LIMIT ?",
                (feed, limit),
            )
        ]

    def rejects(self, feed: str, limit: int = 20) -> list[tuple[int, str, str]]:
        return list(
            self.db.execute(
                "SELECT line, text, reason FROM rejects WHERE feed = ? ORDER BY line LIMIT ?",
                (feed, limit),
            )
        )

    def skips(self, feed: str) -> list[tuple[str, int, int, str]]:
        """Lines of the last good update not applied: (reason, lines, first line, its text),
        most frequent reason first."""
        return [
            (str(why), int(n), int(no), str(text))
            for why, n, no, text in self.db.execute(
                "SELECT reason, lines, line, text FROM skips WHERE feed = ?"
                " ORDER BY lines DESC, line",
                (feed,),
            )
        ]

    def counts(self, feed: str) -> tuple[int, int]:
        """(listed entries, entries lingering after they left the source)."""
        row = self.db.execute(
            "SELECT count(*), count(delisted) FROM entries"
            f" WHERE feed = ? AND rule = {LIST} AND listed = 1",
            (feed,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def _prov(self, r: tuple[object, ...], last: dict[str, int | None]) -> Provenance:
        feed, rule, kind, value, first, delisted, listed, reason, ref, mods = r
        assert isinstance(feed, str)
        if feed not in last:
            last[feed] = self.last_good(feed)
        seen = delisted if isinstance(delisted, int) else (last[feed] or first)
        return Provenance(
            feed,
            "allow" if rule == ALLOW else "list",
            str(kind),
            str(value),
            int(str(first)),
            int(str(seen)),
            delisted if isinstance(delisted, int) else None,
            bool(listed),
            str(reason),
            str(ref),
            str(mods),
        )
