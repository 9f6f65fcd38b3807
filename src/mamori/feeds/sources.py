"""Updating a feed: fetch (or read), parse, check, guard, compile to its policy zone.

A feed that cannot be fetched keeps serving its last good copy (the HTTP
download is cached on disk with its ETag / Last-Modified, so an unchanged
source costs a 304). A feed that fails its error budget is refused whole:
nothing is written, the compiled zone of the last good update stays.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mamori.config import FeedConfig, StoreConfig, feed_zone
from mamori.feeds import guard, parsers
from mamori.feeds.normalize import Entry
from mamori.feeds.parsers import FeedError
from mamori.feeds.publish import rpz as rpz_out

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 60


@dataclass
class UpdateResult:
    feed: str
    source: str = ""  # "file", "http 200", "http 304 (unchanged)", "cached copy (...)"
    entries: int = 0
    exceptions: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: int = 0
    guarded: list[tuple[str, str]] = field(default_factory=list)  # value, reason
    serial: int = 0
    changed: bool = False

    def summary(self) -> str:
        state = f"serial {self.serial}, {'changed' if self.changed else 'unchanged'}"
        return (
            f"{self.feed}: {self.entries} entries, {self.exceptions} allow rules,"
            f" {len(self.rejected)} rejected, {len(self.guarded)} refused by the guards,"
            f" {self.skipped} not for DNS; {state} ({self.source})"
        )


def cache_dir(store: StoreConfig) -> Path:
    return store.path.parent / "feeds" / "cache"


def fetch(feed: FeedConfig, cache: Path) -> tuple[list[str], str]:
    """The feed's lines and where they came from."""
    if feed.path is not None:
        try:
            return feed.path.read_text(encoding="utf-8", errors="replace").splitlines(), "file"
        except OSError as e:
            raise FeedError(f"feed {feed.name}: cannot read {feed.path}: {e.strerror}") from e
    data, meta = cache / f"{feed.name}.data", cache / f"{feed.name}.meta"
    headers = {"User-Agent": "mamori feed updater"}
    if data.exists() and meta.exists():
        m = json.loads(meta.read_text())
        if m.get("etag"):
            headers["If-None-Match"] = m["etag"]
        if m.get("last_modified"):
            headers["If-Modified-Since"] = m["last_modified"]
    request = urllib.request.Request(feed.url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as r:
            body = r.read()
            cache.mkdir(parents=True, exist_ok=True)
            tmp = data.with_name(data.name + ".tmp")
            tmp.write_bytes(body)
            tmp.replace(data)
            meta.write_text(
                json.dumps(
                    {"etag": r.headers.get("ETag"), "last_modified": r.headers.get("Last-Modified")}
                )
            )
            return body.decode("utf-8", errors="replace").splitlines(), f"http {r.status}"
    except urllib.error.HTTPError as e:
        if e.code == 304 and data.exists():
            return _cached(data), "http 304 (unchanged)"
        reason = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = str(getattr(e, "reason", e))
    if data.exists():
        log.warning(
            "feed %s: %s unreachable (%s): using the cached copy", feed.name, feed.url, reason
        )
        return _cached(data), f"cached copy ({reason})"
    raise FeedError(f"feed {feed.name}: {feed.url} unreachable ({reason}) and no cached copy")


def entries_path(feed: FeedConfig, store: StoreConfig) -> Path:
    """The feed's accepted entries (for the DNSBL responder and exports)."""
    return store.path.parent / "feeds" / f"{feed.name}.entries"


def write_entries(path: Path, feed: FeedConfig, entries: list[Entry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(f"# feed {feed.name} category {feed.category}\n")
        f.writelines(f"{e.kind}\t{e.value}\n" for e in entries)
    tmp.replace(path)


def _cached(path: Path) -> list[str]:
    return path.read_bytes().decode("utf-8", errors="replace").splitlines()


def update(feed: FeedConfig, store: StoreConfig) -> UpdateResult:
    """One update of *feed*; FeedError leaves the last good compiled zone in place."""
    out = UpdateResult(feed.name)
    lines, out.source = fetch(feed, cache_dir(store))
    result = parsers.parse(feed.format, lines)
    parsers.check_budget(result, f"feed {feed.name}", feed.max_bad)
    allow = guard.read_allowlist(feed.allowlist)
    entries = []
    for e in result.entries:
        why = guard.refusal(e, allow)
        if why is None:
            entries.append(e)
        else:
            out.guarded.append((e.value, why))
    out.entries, out.exceptions = len(entries), len(result.exceptions)
    out.rejected, out.skipped = result.rejected, len(result.skipped)
    target = {"nxdomain": ".", "nodata": "*."}.get(feed.action)
    if target is None:  # cname:TARGET, a walled garden
        target = feed.action[6:].rstrip(".") + "."
    zone = feed_zone(feed, store)
    assert zone.file is not None
    lines_out = rpz_out.rules(entries, result.exceptions, target)
    out.serial, out.changed = rpz_out.write_zone(zone.file, zone.name, lines_out)
    if out.changed or not entries_path(feed, store).exists():
        write_entries(entries_path(feed, store), feed, entries)
    for no, _text, why in result.rejected[:20]:
        log.warning("feed %s: line %d rejected: %s", feed.name, no, why)
    for value, why in out.guarded[:20]:
        log.warning("feed %s: %s not listed: %s", feed.name, value, why)
    return out
