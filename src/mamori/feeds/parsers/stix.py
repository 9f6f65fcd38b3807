"""STIX 2.1 bundles (and TAXII 2.1 collections' objects): network indicators.

Only ``indicator`` objects count (an observed ``domain-name`` alone says
nothing about malice). Their STIX patterns are parsed with the OASIS pattern
grammar (``stix2-patterns``); the ``value`` of ``domain-name``, ``url``,
``ipv4-addr`` and ``ipv6-addr`` comparisons (``=`` and ``IN``) become entries
(``LIKE '%.name'``, and ``MATCHES '^.+\\.name$'`` with only escaped dots in
the name, a wildcard for the names below).
An indicator whose pattern also needs non-network observables (a file hash,
a process ...) is skipped: the name alone would not meet it. Revoked
indicators and those past ``valid_until`` are skipped. The reason is the
indicator's name (else its types); the reference is its first external
reference URL, else its id. "Line" numbers are object positions (1-based).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from stix2patterns.exceptions import ParseException
from stix2patterns.pattern import Pattern

from mamori.dnsutil.textfile import first_bad_line
from mamori.feeds.normalize import RejectedError, entry
from mamori.feeds.parsers.base import FeedError, ParseResult

NETWORK = ("domain-name", "url", "ipv4-addr", "ipv6-addr")


def parse(lines: Iterable[str]) -> ParseResult:
    """A bundle (``{"type": "bundle", "objects": [...]}``), an envelope or a list.

    JSON is UTF-8 (RFC 8259 section 8.1): a byte that is not refuses the whole
    file, naming its line (FeedError).
    """
    text = "\n".join(ln.rstrip("\r\n") for ln in lines)
    bad = first_bad_line(text)
    if bad is not None:
        raise FeedError(f"not UTF-8 JSON: line {bad[0]}: {bad[1]}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(f"not STIX JSON: line {e.lineno}: {e.msg}") from None
    objects = doc.get("objects") if isinstance(doc, dict) else doc
    if not isinstance(objects, list):
        raise FeedError("not a STIX bundle: no objects list")
    return parse_objects(objects)


def parse_objects(objects: Iterable[Any], now: datetime | None = None) -> ParseResult:
    out = ParseResult()
    moment = now or datetime.now(UTC)
    for no, obj in enumerate(objects, 1):
        out.lines = no
        if not isinstance(obj, dict) or "type" not in obj:
            out.rejected.append((no, str(obj)[:200], "not a STIX object"))
            continue
        if obj["type"] != "indicator":
            continue  # SDOs/SROs around the indicators: not entries
        _indicator(out, no, obj, moment)
    return out


def _indicator(out: ParseResult, no: int, obj: dict[str, Any], now: datetime) -> None:
    ident = str(obj.get("id", ""))
    if obj.get("pattern_type", "stix") != "stix":
        out.skipped.append((no, ident, f"pattern type {obj.get('pattern_type')}"))
        return
    if obj.get("revoked"):
        out.skipped.append((no, ident, "revoked"))
        return
    until = _time(obj.get("valid_until"))
    if until is not None and until <= now:
        out.skipped.append((no, ident, f"expired (valid_until {obj['valid_until']})"))
        return
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        out.rejected.append((no, ident, "indicator without a pattern"))
        return
    try:
        comparisons = Pattern(pattern).inspect().comparisons
    except ParseException as e:
        out.rejected.append((no, pattern[:200], f"bad STIX pattern: {e}"))
        return
    others = [t for t in comparisons if t not in NETWORK]
    if others:
        out.skipped.append((no, ident, f"needs non-network observables ({', '.join(others)})"))
        return
    reason = str(obj.get("name") or ", ".join(map(str, _list(obj.get("indicator_types")))))
    refs = [r.get("url") for r in _list(obj.get("external_references")) if isinstance(r, dict)]
    reference = next((r for r in refs if r and isinstance(r, str)), ident)
    for items in comparisons.values():
        for path, op, literal in items:
            values = _literals(literal)
            below = _names_below(op, values)
            if below is not None:
                values = ["*." + below]  # the names below (a wildcard)
            elif path != ["value"] or op not in ("=", "IN"):
                out.skipped.append((no, ident, f"comparison {'.'.join(map(str, path))} {op}"))
                continue
            for value in values:
                try:
                    out.entries.append(entry(value, reason, reference))
                except RejectedError as r:
                    out.rejected.append((no, value, str(r)))


_BELOW = re.compile(r"\^\.\+\\\.((?:[A-Za-z0-9_-]+\\\.)*[A-Za-z0-9_-]+)\$")


def _names_below(op: str, values: list[str]) -> str | None:
    """The name of ``LIKE '%.example.com'`` (no other ``%``/``_``) or of
    ``MATCHES '^.+\\.example\\.com$'`` (what our export writes for a name with ``_``),
    whose matches are the names below it; else None."""
    if len(values) != 1:
        return None
    if op == "LIKE" and values[0].startswith("%.") and not any(c in values[0][2:] for c in "%_"):
        return values[0][2:]
    m = _BELOW.fullmatch(values[0]) if op == "MATCHES" else None
    return m.group(1).replace("\\.", ".") if m else None


def _literals(literal: str) -> list[str]:
    """``'x'`` -> [x]; ``('a', 'b')`` -> [a, b] (quotes unescaped)."""
    text = literal.strip()
    if text.startswith("("):
        text = text[1:-1]
    out, cur, inside, i = [], [], False, 0
    while i < len(text):
        c = text[i]
        if inside and c == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if c == "'":
            if inside:
                out.append("".join(cur))
                cur = []
            inside = not inside
        elif inside:
            cur.append(c)
        i += 1
    return out


def _time(text: Any) -> datetime | None:
    """An RFC 3339 timestamp; one without a zone is taken as UTC (STIX 2.1 3.2
    requires UTC); None when it is not a timestamp."""
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _list(value: Any) -> list[Any]:
    """A JSON array property as a list; anything else (a string, an object, a
    number, missing) as an empty one."""
    return value if isinstance(value, list) else []
