"""Updating a feed: fetch (or read), parse, check, guard, compile to its policy zone.

A feed that cannot be fetched keeps serving its last good copy (the HTTP
download is cached on disk with its ETag / Last-Modified, so an unchanged
source costs a 304). A feed that fails its error budget is refused whole:
nothing is written, the compiled zone of the last good update stays.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamori.atomicfile import replacing, write_atomic
from mamori.config import Config, FeedConfig, StoreConfig, dataset_zone, feed_zone
from mamori.config.feeds import dataset_feeds
from mamori.dnsutil import textfile
from mamori.errors import StoreError
from mamori.feeds import guard, parsers, remote
from mamori.feeds.dataset import ALLOW, FeedDB, db_path, store_lock
from mamori.feeds.modifiers import Modifiers
from mamori.feeds.normalize import Entry
from mamori.feeds.parsers import FeedError, FeedUnreachableError, ParseResult
from mamori.feeds.parsers import misp as misp_parser
from mamori.feeds.parsers import stix as stix_parser
from mamori.feeds.precedence import client_conflicts
from mamori.feeds.publish import rpz as rpz_out

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 60


# Progress of a long step: (what, done, total or None); the CLI draws a bar.
Report = Callable[[str, int, int | None], None]


def _quiet(_what: str, _done: int, _total: int | None) -> None:
    pass


@dataclass
class UpdateResult:
    feed: str
    source: str = ""  # "file", "http 200", "http 304 (unchanged)", "cached copy (...)"
    entries: int = 0
    exceptions: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: int = 0  # valid lines not applied (reasons: FeedDB.skips, `mamori feeds show`)
    guarded: list[tuple[str, str]] = field(default_factory=list)  # value, reason
    added: int = 0
    removed: int = 0
    lingering: int = 0  # left the source, listed until delist_after
    serial: int = 0
    changed: bool = False

    def summary(self) -> str:
        state = f"serial {self.serial}, {'changed' if self.changed else 'unchanged'}"
        linger = f" ({self.lingering} until delist_after)" if self.lingering else ""
        return (
            f"{self.feed}: {self.entries} entries{linger}, +{self.added} -{self.removed},"
            f" {self.exceptions} allow rules, {len(self.rejected)} rejected,"
            f" {len(self.guarded)} refused by the guards, {self.skipped} skipped;"
            f" {state} ({self.source})"
        )


def cache_dir(store: StoreConfig) -> Path:
    return store.path.parent / "feeds" / "cache"


def fetch(feed: FeedConfig, cache: Path, report: Report = _quiet) -> tuple[list[str], str]:
    """The feed's lines (each with its end) and where they came from.

    The bytes are decoded by ``dnsutil.textfile`` (a byte-order mark is
    ignored, UTF-16/32 with one decoded, bytes that are not UTF-8 left for
    the parser to reject with their line); FeedError if the file cannot be
    read or fetched.
    """
    if feed.path is not None:
        try:
            return _lines(feed, feed.path.read_bytes(), str(feed.path)), "file"
        except OSError as e:
            raise FeedError(f"feed {feed.name}: cannot read {feed.path}: {e.strerror}") from e
    data, meta = cache / f"{feed.name}.data", cache / f"{feed.name}.meta"
    headers = {"User-Agent": "mamori feed updater"}
    if data.exists() and meta.exists():
        m = _read_meta(meta)
        if m.get("etag"):
            headers["If-None-Match"] = m["etag"]
        if m.get("last_modified"):
            headers["If-Modified-Since"] = m["last_modified"]
    request = urllib.request.Request(feed.url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as r:
            length = r.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            chunks, got = [], 0
            while chunk := r.read(1 << 16):
                chunks.append(chunk)
                got += len(chunk)
                report(f"download {feed.name}", got, total)
            body = b"".join(chunks)
            # the body first, then its validators: a crash between the two leaves the new
            # body with the old ETag (the next fetch gets it again), never the reverse
            write_atomic(data, body)
            write_atomic(
                meta,
                json.dumps(
                    {"etag": r.headers.get("ETag"), "last_modified": r.headers.get("Last-Modified")}
                ),
            )
            return _lines(feed, body, feed.url), f"http {r.status}"
    except urllib.error.HTTPError as e:
        if e.code == 304 and data.exists():
            return _cached(feed, data), "http 304 (unchanged)"
        reason = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = str(getattr(e, "reason", e))
    if data.exists():
        log.warning(
            "feed %s: %s unreachable (%s): using the cached copy", feed.name, feed.url, reason
        )
        return _cached(feed, data), f"cached copy ({reason})"
    raise FeedUnreachableError(
        f"feed {feed.name}: {feed.url} unreachable ({reason}) and no cached copy"
    )


def _read_meta(path: Path) -> dict[str, Any]:
    """The cached copy's HTTP validators; {} when unreadable (then fetched whole)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable (%s): the feed is fetched whole", path, e)
        return {}
    return doc if isinstance(doc, dict) else {}


def entries_path(feed: FeedConfig, store: StoreConfig) -> Path:
    """The feed's accepted entries (for the DNSBL responder and exports)."""
    return store.path.parent / "feeds" / f"{feed.name}.entries"


def write_entries(path: Path, feed: FeedConfig, entries: list[Entry]) -> None:
    with replacing(path) as f:
        f.write(f"# feed {feed.name} category {feed.category}\n")
        f.writelines(f"{e.kind}\t{e.value}\n" for e in entries)


def _plain(e: Entry) -> bool:
    """An entry a DNSBL can list: a name or address for every type, no ``$denyallow``."""
    if e.kind == "client":
        return False
    m = Modifiers.of(e.modifiers)
    return not m.qtypes and not m.denyallow


def _cached(feed: FeedConfig, path: Path) -> list[str]:
    return _lines(feed, path.read_bytes(), f"{feed.url} (cached copy {path})")


def _lines(feed: FeedConfig, data: bytes, where: str) -> list[str]:
    try:
        return textfile.lines(textfile.decode(data))
    except UnicodeDecodeError as e:
        raise FeedError(
            f"feed {feed.name}: {where}: not valid {e.encoding.upper()}"
            f" (byte {e.start} of the file): {e.reason}"
        ) from None


def read(feed: FeedConfig, cache: Path, report: Report = _quiet) -> tuple[ParseResult, str]:
    """Fetch (or read) and parse the feed; FeedError when it cannot be used."""
    if feed.format == "taxii":
        objects, source = remote.taxii_objects(feed, cache)
        return stix_parser.parse_objects(objects), source
    if feed.format == "misp":
        events, source = remote.misp_events(feed, cache)
        return misp_parser.parse_events(events), source
    lines, source = fetch(feed, cache, report)
    total = len(lines)

    def counted() -> Iterator[str]:
        for i, line in enumerate(lines, 1):
            if i % 50_000 == 0:
                report(f"parse {feed.name}", i, total)
            yield line
        report(f"parse {feed.name}", total, total)

    return parsers.parse(feed.format, counted(), feed.columns), source


def update(
    feed: FeedConfig, store: StoreConfig, report: Report = _quiet, now: int | None = None
) -> UpdateResult:
    """One update of *feed*; FeedError leaves the last good compiled zone in place.

    The outcome (good or refused) is remembered with the feed's provenance.
    StoreError when the feed store cannot be opened or written.
    """
    with FeedDB(db_path(store.path)) as db:
        try:
            return _update(feed, store, db, report, now)
        except FeedError as e:
            if not getattr(e, "logged", False):
                db.log_update(feed.name, False, "", str(e), now=now)
            raise
        except sqlite3.Error as e:  # e.g. a store file another user owns
            where = db_path(store.path)
            raise StoreError(f"feed {feed.name}: cannot write the feed store {where}: {e}") from e


def _update(
    feed: FeedConfig, store: StoreConfig, db: FeedDB, report: Report, now: int | None
) -> UpdateResult:
    out = UpdateResult(feed.name)
    result, out.source = read(feed, cache_dir(store), report)
    try:
        parsers.check_budget(result, f"feed {feed.name}", feed.max_bad)
    except FeedError as refused:  # its rejected lines are kept to show why
        counts = (0, 0, 0, len(result.rejected), 0)
        db.log_update(feed.name, False, out.source, str(refused), counts, result.rejected, now)
        refused.logged = True  # type: ignore[attr-defined]
        raise
    allow = guard.read_allowlist(feed.allowlist)
    entries = []
    for e in result.entries:
        why = guard.refusal(e, allow)
        if why is None:
            entries.append(e)
        else:
            out.guarded.append((e.value, why))
    zone = feed_zone(feed, store)
    assert zone.file is not None
    with store_lock(store.path):  # the entries recorded and the zone written from them
        change = db.record(feed.name, entries, result.exceptions, feed.delist_after, now)
        lines_out = rpz_out.rules(change.listed, change.allowed, target(feed.action))
        out.serial, out.changed = rpz_out.write_zone(zone.file, zone.name, lines_out)
        if out.changed or not entries_path(feed, store).exists():
            write_entries(entries_path(feed, store), feed, [e for e in change.listed if _plain(e)])
    out.entries, out.exceptions = len(change.listed), len(change.allowed)
    out.added, out.removed = len(change.added), len(change.removed)
    out.lingering = len(change.listed) - len({(e.kind, e.value, e.modifiers) for e in entries})
    out.rejected, out.skipped = result.rejected, len(result.skipped)
    for no, _text, why in result.rejected[:20]:
        log.warning("feed %s: line %d rejected: %s", feed.name, no, why)
    for value, why in out.guarded[:20]:
        log.warning("feed %s: %s not listed: %s", feed.name, value, why)
    counts = (out.entries, out.added, out.removed, len(out.rejected), out.serial)
    db.log_update(
        feed.name, True, out.source, out.summary(), counts, result.rejected, now, result.skipped
    )
    return out


def target(action: str) -> str:
    """The CNAME target of an action: ``.`` NXDOMAIN, ``*.`` NODATA, else the garden."""
    fixed = {"nxdomain": ".", "nodata": "*."}.get(action)
    return fixed if fixed is not None else action[6:].rstrip(".") + "."


def compile_feeds(cfg: Config) -> list[tuple[str, int, bool, int]]:
    """Rewrite the zones of the enabled feeds from what they list now, without fetching:
    (name, serial, changed, entries) each.

    Run at start, so that a zone written by another version of this compiler
    (e.g. before RFC 4592 matching, ``rpz_out.cover_closest_enclosers``)
    means what its list means before the feed's next update. The serial moves
    only when the rules change. A feed with no zone yet waits for its first update.
    """
    out = []
    with store_lock(cfg.store.path), FeedDB(db_path(cfg.store.path)) as db:
        for feed in cfg.feeds:
            zone = feed_zone(feed, cfg.store)
            assert zone.file is not None
            if not feed.enabled or not zone.file.exists():
                continue
            entries, allowed = db.listed([feed.name]), db.listed([feed.name], ALLOW)
            lines = rpz_out.rules(entries, allowed, target(feed.action))
            serial, changed = rpz_out.write_zone(zone.file, zone.name, lines)
            out.append((feed.name, serial, changed, len(entries)))
    return out


def compile_datasets(cfg: Config, only: set[str] | None = None) -> list[tuple[str, int, bool, int]]:
    """Rewrite the zones of the datasets (uniting feeds in *only*, or all):
    (name, serial, changed, entries) each. Under the store's writer lock
    (``dataset.store_lock``), like a feed's update: each zone is written from the
    newest entries, whichever process writes last."""
    out = []
    with store_lock(cfg.store.path), FeedDB(db_path(cfg.store.path)) as db:
        for ds in cfg.datasets:
            names = [f.name for f in dataset_feeds(ds, cfg.feeds)]
            if only is not None and not only & set(names):
                continue
            entries, allowed = db.listed(names), db.listed(names, ALLOW)
            for e, _allow, why in client_conflicts(entries, allowed):
                log.warning("dataset %s: %s %s not applied: %s", ds.name, e.kind, e.value, why)
            zone = dataset_zone(ds, cfg.store)
            assert zone.file is not None
            lines = rpz_out.rules(entries, allowed, target(ds.action))
            serial, changed = rpz_out.write_zone(zone.file, zone.name, lines)
            out.append((ds.name, serial, changed, len(entries)))
    return out
