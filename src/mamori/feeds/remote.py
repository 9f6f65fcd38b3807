"""Structured sources: TAXII 2.1 collections and MISP feeds (manifest + events).

Both keep a local copy in the feeds cache so that an unreachable server keeps
the last good data, and both fetch only what is new:

* TAXII: objects added since the last poll (``added_after``, five minutes of
  overlap), merged by id keeping the latest ``modified`` version; the feed's
  content is every cached object (the parser drops revoked/expired ones).
* MISP: the manifest, then each event whose timestamp changed; events that
  left the manifest are dropped.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mamori.atomicfile import write_atomic
from mamori.config.feeds import FeedConfig
from mamori.dnsutil import textfile
from mamori.feeds.parsers.base import FeedError, FeedUnreachableError

log = logging.getLogger(__name__)

TIMEOUT = 60
OVERLAP = timedelta(minutes=5)


def taxii_objects(feed: FeedConfig, cache: Path) -> tuple[list[dict[str, Any]], str]:
    """Every STIX object of the feed's TAXII 2.1 collection (cached), and the source."""
    from taxii2client.exceptions import TAXIIServiceException
    from taxii2client.v21 import Collection, as_pages

    path = cache / f"{feed.name}.taxii.json"
    state = _read_json(path) or {"last": None, "objects": {}}
    objects: dict[str, dict[str, Any]] = state["objects"]
    started = datetime.now(UTC)
    try:
        coll = Collection(feed.url, user=feed.user or None, password=feed.password or None)
        filters = {"added_after": state["last"]} if state["last"] else {}
        fetched = 0
        for envelope in as_pages(coll.get_objects, per_request=1000, **filters):
            for obj in envelope.get("objects", []) or []:
                if not isinstance(obj, dict) or "id" not in obj:
                    continue
                old = objects.get(obj["id"])
                if old is None or str(obj.get("modified", "")) >= str(old.get("modified", "")):
                    objects[obj["id"]] = obj
                fetched += 1
    except (TAXIIServiceException, OSError, ValueError) as e:
        if state["last"] is None:
            if isinstance(e, OSError):  # connection-level: offline, DNS, refused
                raise FeedUnreachableError(f"feed {feed.name}: TAXII {feed.url}: {e}") from e
            raise FeedError(f"feed {feed.name}: TAXII {feed.url}: {e}") from e
        log.warning("feed %s: TAXII %s failed (%s): using the cached copy", feed.name, feed.url, e)
        return list(objects.values()), f"cached copy ({e})"
    state["last"] = (started - OVERLAP).isoformat().replace("+00:00", "Z")
    _write_json(path, state)
    return list(objects.values()), f"taxii {fetched} new objects"


def misp_events(feed: FeedConfig, cache: Path) -> tuple[list[dict[str, Any]], str]:
    """The events of a MISP feed (a URL or a local directory with manifest.json)."""
    store = cache / f"{feed.name}.misp"
    try:
        manifest = _get_json(feed, "manifest.json")
    except FeedError as e:
        cached = sorted(store.glob("*.json")) if store.exists() else []
        if not cached:
            raise
        log.warning("feed %s: %s: using the cached events", feed.name, e)
        return [_read_json(p) for p in cached], f"cached copy ({e})"
    if not isinstance(manifest, dict):
        raise FeedError(f"feed {feed.name}: manifest.json is not an object of events")
    store.mkdir(parents=True, exist_ok=True)
    stamps = _read_json(store / "stamps") or {}
    events, fetched = [], 0
    for uuid, meta in manifest.items():
        if not all(c.isalnum() or c == "-" for c in uuid):
            raise FeedError(f"feed {feed.name}: manifest.json: bad event id {uuid!r}")
        stamp = str(meta.get("timestamp", "")) if isinstance(meta, dict) else ""
        local = store / f"{uuid}.json"
        if stamps.get(uuid) != stamp or not local.exists():
            event = _get_json(feed, f"{uuid}.json")
            _write_json(local, event)
            stamps[uuid] = stamp
            fetched += 1
        events.append(_read_json(local))
    for old in store.glob("*.json"):
        if old.stem not in manifest:
            old.unlink()
            stamps.pop(old.stem, None)
    _write_json(store / "stamps", stamps)
    return events, f"misp {len(manifest)} events, {fetched} fetched"


def _get_json(feed: FeedConfig, name: str) -> Any:
    if feed.path is not None:
        try:
            return _json(feed, (feed.path / name).read_bytes(), str(feed.path / name))
        except OSError as e:
            raise FeedError(f"feed {feed.name}: cannot read {feed.path / name}: {e}") from e
    url = feed.url.rstrip("/") + "/" + name
    headers = {"User-Agent": "mamori feed updater", "Accept": "application/json"}
    if feed.user:
        token = b64encode(f"{feed.user}:{feed.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=TIMEOUT
        ) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        raise FeedError(f"feed {feed.name}: {url}: HTTP {e.code}") from e
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        why = getattr(e, "reason", e)
        raise FeedUnreachableError(f"feed {feed.name}: {url} unreachable ({why})") from e
    return _json(feed, body, url)


def _json(feed: FeedConfig, data: bytes, where: str) -> Any:
    """A JSON document (UTF-8, RFC 8259 section 8.1; a byte-order mark is ignored, UTF-16/32
    with one decoded); FeedError naming *where* and the line otherwise."""
    try:
        text = textfile.decode(data)
    except UnicodeDecodeError as e:
        raise FeedError(f"feed {feed.name}: {where}: not valid {e.encoding.upper()}") from None
    bad = textfile.first_bad_line(text)
    if bad is not None:
        raise FeedError(f"feed {feed.name}: {where}: line {bad[0]}: {bad[1]}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(f"feed {feed.name}: {where}: bad JSON: {e}") from e


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, doc: Any) -> None:
    write_atomic(path, json.dumps(doc))
