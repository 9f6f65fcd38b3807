"""CSV feeds (RFC 4180): URLhaus's dumps, their Splunk lookup form, spreadsheets, our export.

The text is read as a stream of CSV records with the ``csv`` module's RFC 4180
rules: a quoted field may hold commas, doubled quotes (``""``) and line
breaks; spaces are part of a field. A line starting with ``#`` where a record
would start is a comment.

The columns are named by the first of:

1. the ``[[feed]] columns`` list (for a file without a header); a first
   record equal to these names is a header after all, and is skipped;
2. the first record, when it names a value column (below): a header row;
3. the last comment line before the first record, when it names a value
   column: URLhaus's dumps write their header as
   ``# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter``.

If none does, the feed is refused (FeedError saying so).

The value is the first of the columns ``host``, ``domain``, ``hostname``,
``url``, ``value`` (names are matched case-insensitively; ``value`` is what
``mamori feeds export --format csv`` writes); a URL is reduced to its host.
The reason is the first of ``reason``, ``threat``, ``message``, ``tags``; the
reference the first of ``reference``, ``urlhaus_link``, ``link``; both are
kept exactly as written. A record too short to have the value column, or
holding bytes that were not UTF-8, is rejected with the number of its first
line.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence

from mamori.config.feeds import CSV_VALUE_COLUMNS
from mamori.dnsutil.textfile import bad_bytes, shown
from mamori.feeds.normalize import RejectedError, entry
from mamori.feeds.parsers.base import FeedError, ParseResult

REASON_COLUMNS = ("reason", "threat", "message", "tags")
REFERENCE_COLUMNS = ("reference", "urlhaus_link", "link")


class _Records:
    """The lines handed to ``csv.reader``: comment lines between records left out,
    line numbers counted, each line ending in its line break."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.no = 0  # lines read so far
        self.start = 0  # the first line of the record being read
        self.between = True  # the reader is about to start a record
        self.records = 0  # records read so far (blank lines aside)
        self.comment: str | None = None  # the last comment line before the first record

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            line = next(self._lines)
            self.no += 1
            if self.between:
                if line.startswith("#"):
                    if not self.records:
                        self.comment = line
                    continue
                self.between = False
                self.start = self.no
            return line if line.endswith(("\n", "\r")) else line + "\n"


def _names(row: Sequence[str]) -> list[str]:
    return [c.strip().lower() for c in row]


def _first(names: list[str], wanted: tuple[str, ...]) -> int:
    return next((names.index(c) for c in wanted if c in names), -1)


def parse(lines: Iterable[str], columns: Sequence[str] = ()) -> ParseResult:
    """The entries of a CSV feed; *columns* names the columns of a file without a header.

    Raises FeedError when nothing names a value column, and when the file is not
    CSV as RFC 4180 writes it (a quoted field never closed, a quote inside an
    unquoted field, a field over 131,072 characters): naming the record's first
    line, so that nothing after it is lost in silence.
    """
    out = ParseResult()
    feed = _Records(lines)
    names = _names(columns) if columns else None
    value = reason = reference = -1
    if names is not None:
        value, reason, reference = (_first(names, c) for c in _WANTED)
    try:
        _read(out, feed, columns, names, value, reason, reference)
    except csv.Error as e:
        raise FeedError(f"line {feed.start}: not a CSV record (RFC 4180): {e}") from None
    out.lines = feed.no
    return out


def _read(
    out: ParseResult,
    feed: _Records,
    columns: Sequence[str],
    names: list[str] | None,
    value: int,
    reason: int,
    reference: int,
) -> None:
    for row in csv.reader(feed, strict=True):
        feed.between = True
        out.lines = feed.no
        if not any(f.strip() for f in row):
            continue  # a blank line
        feed.records += 1
        if value < 0:
            names, is_header = _header(row, feed)
            value, reason, reference = (_first(names, c) for c in _WANTED)
            if is_header:
                continue
        elif columns and feed.records == 1 and _names(row) == names:
            continue  # the configured names, written as a header row too
        _record(out, feed.start, row, value, reason, reference)


_WANTED = (CSV_VALUE_COLUMNS, REASON_COLUMNS, REFERENCE_COLUMNS)


def _header(row: list[str], feed: _Records) -> tuple[list[str], bool]:
    """The column names, and whether the first record is the header that gave them
    (else the last comment line above it did)."""
    names = _names(row)
    if _first(names, CSV_VALUE_COLUMNS) >= 0:
        return names, True
    if feed.comment is not None:
        text = feed.comment.lstrip("#").strip()
        from_comment = _names(next(csv.reader([text]), []))
        if _first(from_comment, CSV_VALUE_COLUMNS) >= 0:
            return from_comment, False
    wanted = ", ".join(CSV_VALUE_COLUMNS)
    raise FeedError(
        f"line {feed.start}: no header: neither this first record nor the last comment line"
        f" above it names a column {wanted}; for a file without a header, name its columns"
        " with columns = [...] in the [[feed]]"
    )


def _record(
    out: ParseResult, no: int, row: list[str], value: int, reason: int, reference: int
) -> None:
    text = ",".join(row)
    if value >= len(row):
        short = f"{len(row)} fields: no field {value + 1} (the value column)"
        out.rejected.append((no, shown(text), short))
        return
    for i, field in enumerate(row, 1):
        bad = bad_bytes(field)
        if bad is not None:
            out.rejected.append((no, shown(text), f"field {i}: {bad}"))
            return
    try:
        why_listed = row[reason] if 0 <= reason < len(row) else ""
        ref = row[reference] if 0 <= reference < len(row) else ""
        out.entries.append(entry(row[value], why_listed, ref))
    except RejectedError as r:
        out.rejected.append((no, text, str(r)))
