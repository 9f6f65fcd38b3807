"""CSV feeds (URLhaus and its Splunk lookup form): the host, domain or URL column.

The first non-comment row is the header; the column used is the first of
``host``, ``domain``, ``hostname``, ``url``, ``value`` (case-insensitive;
``value`` is what ``mamori feeds export --format csv`` writes). A URL is
reduced to its host. Provenance comes from the ``threat`` / ``message`` /
``tags`` column (the reason) and ``urlhaus_link`` / ``reference`` / ``link``
(the reference) when there are such columns.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable

from mamori.feeds.normalize import RejectedError, entry
from mamori.feeds.parsers.base import ParseResult

_COLUMNS = ("host", "domain", "hostname", "url", "value")
_REASON = ("threat", "message", "tags")
_REFERENCE = ("urlhaus_link", "reference", "link")


def parse(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    numbered = ((no, line) for no, line in enumerate(lines, 1))
    data = ((no, line) for no, line in numbered if line.strip() and not line.startswith("#"))
    column: int | None = None
    reason = reference = -1
    for no, line in data:
        out.lines = no
        row = next(csv.reader([line]))
        if column is None:
            header = [h.strip().lower() for h in row]
            column = next((header.index(c) for c in _COLUMNS if c in header), None)
            if column is None:
                out.rejected.append((no, line, f"no {'/'.join(_COLUMNS)} column in the header"))
                return out
            reason = next((header.index(c) for c in _REASON if c in header), -1)
            reference = next((header.index(c) for c in _REFERENCE if c in header), -1)
            continue
        if column >= len(row):
            out.rejected.append((no, line, "row shorter than the header"))
            continue
        try:
            why = row[reason].strip() if 0 <= reason < len(row) else ""
            ref = row[reference].strip() if 0 <= reference < len(row) else ""
            out.entries.append(entry(row[column], why, ref))
        except RejectedError as r:
            out.rejected.append((no, line, str(r)))
    return out
