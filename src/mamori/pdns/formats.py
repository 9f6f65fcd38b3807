"""Passive DNS output: COF / DNSDB JSON records, dnsdbq-style text, CSV; time arguments."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from mamori.pdns.model import type_text
from mamori.store.pdns_base import Record

_REL = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_time(text: str, now: float | None = None) -> int:
    """Epoch seconds, an ISO date/time (UTC unless it says), or relative ``1w2d3h`` (ago).

    A negative number is relative too (``-3600``: an hour ago), as in dnsdbq.
    """
    t = text.strip()
    now = time.time() if now is None else now
    if re.fullmatch(r"-?\d+", t):
        v = int(t)
        return int(now) + v if v < 0 else v
    m = _REL.match(t)
    if m and any(m.groups()):
        w, d, h, mi, s = (int(x or 0) for x in m.groups())
        return int(now) - (((w * 7 + d) * 24 + h) * 60 + mi) * 60 - s
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (epoch seconds, 2026-11-28, 2026-11-28T08:00:00Z, or 1w2d3h)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def cof(r: Record) -> dict[str, Any]:
    """A record in the Common Output Format (also DNSDB's field names)."""
    out: dict[str, Any] = {
        "count": r.count,
        "time_first": r.time_first,
        "time_last": r.time_last,
        "rrtype": type_text(r.rrtype),
        "rrname": r.rrname,
        "rdata": [r.rdata],
    }
    if r.bailiwick:
        out["bailiwick"] = r.bailiwick
    return out


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def text(records: list[Record], note: Callable[[Record], str] | None = None) -> str:
    """dnsdbq's presentation: one block per tuple with its times and count; *note*: a
    comment for a record's line (``; AS15169 GOOGLE, US``), "" for none."""
    blocks = []
    for r in records:
        head = f";; record times: {iso(r.time_first)} .. {iso(r.time_last)}\n;; count: {r.count}"
        if r.bailiwick:
            head += f"; bailiwick: {r.bailiwick}"
        extra = note(r) if note is not None else ""
        tail = f"  ; {extra}" if extra else ""
        blocks.append(f"{head}\n{r.rrname}  {type_text(r.rrtype)}  {r.rdata}{tail}\n")
    return "\n".join(blocks)


def csv_text(
    records: list[Record],
    extra: tuple[Sequence[str], Callable[[Record], list[object]]] | None = None,
) -> str:
    """CSV with a header; *extra*: more columns (their names, a record's values)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    more = list(extra[0]) if extra else []
    w.writerow(["time_first", "time_last", "count", "bailiwick", "rrname", "rrtype", "rdata",
                *more])  # fmt: skip
    for r in records:
        w.writerow([iso(r.time_first), iso(r.time_last), r.count, r.bailiwick, r.rrname,
                    type_text(r.rrtype), r.rdata, *(extra[1](r) if extra else [])])  # fmt: skip
    return buf.getvalue()
