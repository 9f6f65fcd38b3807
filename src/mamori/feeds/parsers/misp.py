"""MISP feeds: events (``{"Event": {...}}``) from a feed's manifest.

Attributes (of the event and of its objects) of network types become entries
when ``to_ids`` is set (the attributes MISP marks for detection); deleted
attributes and the rest are skipped. ``domain|ip`` and ``*|port`` values give
their name or address. The reason is the event's ``info``, the reference
``misp:event/UUID``. "Line" numbers are attribute positions across events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mamori.feeds.normalize import RejectedError, entry
from mamori.feeds.parsers.base import ParseResult

NETWORK = {
    "domain", "hostname", "url", "ip-dst", "ip-src", "domain|ip",
    "hostname|port", "ip-dst|port", "ip-src|port",
}  # fmt: skip


def parse_events(events: Iterable[dict[str, Any]]) -> ParseResult:
    out = ParseResult()
    no = 0
    for doc in events:
        event = doc.get("Event", doc) if isinstance(doc, dict) else None
        if not isinstance(event, dict):
            no += 1
            out.rejected.append((no, str(doc)[:200], "not a MISP event"))
            continue
        reason = str(event.get("info", ""))
        reference = f"misp:event/{event.get('uuid', '')}"
        for attr in _attributes(event):
            no += 1
            out.lines = no
            kind = attr.get("type")
            value = str(attr.get("value", ""))
            if not isinstance(kind, str) or kind not in NETWORK:
                continue  # hashes, e-mail addresses ...: not for DNS
            if attr.get("deleted") or not _true(attr.get("to_ids", False)):
                out.skipped.append((no, value, "deleted" if attr.get("deleted") else "to_ids off"))
                continue
            token = value.split("|", 1)[0]
            try:
                out.entries.append(entry(token, reason, reference))
            except RejectedError as r:
                out.rejected.append((no, value, str(r)))
    return out


def _attributes(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for attr in _list(event.get("Attribute")):
        if isinstance(attr, dict):
            yield attr
    for obj in _list(event.get("Object")):
        if isinstance(obj, dict) and not obj.get("deleted"):
            for attr in _list(obj.get("Attribute")):
                if isinstance(attr, dict):
                    yield attr


def _list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (an object, a number, null) as empty."""
    return value if isinstance(value, list) else []


def _true(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() in ("1", "true")) or v == 1
