"""Passive DNS output: COF / DNSDB JSON records, dnsdbq-style text, CSV; time arguments;
the NDJSON lines ``mamori pdns export`` writes and ``import`` reads."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from mamori.dnsutil.wire import WireError, text_to_name
from mamori.pdns.model import type_code, type_text
from mamori.store.pdns_base import NxRecord, Record

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
    """*t* (UNIX seconds) as ``YYYY-MM-DD HH:MM:SS`` UTC; a time no calendar date can
    show (a stored millisecond timestamp, a negative one) as its number."""
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return str(t)


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


def _cell(value: object) -> object:
    """A text cell starting with ``=``, ``+``, ``-`` or ``@`` prefixed with ``'`` (OWASP
    CSV injection): a spreadsheet then shows it as text, not a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


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
        more_cells = [_cell(v) for v in (extra[1](r) if extra else [])]
        w.writerow([iso(r.time_first), iso(r.time_last), r.count, r.bailiwick, r.rrname,
                    type_text(r.rrtype), r.rdata, *more_cells])  # fmt: skip
    return buf.getvalue()


# ------------------------------------------------------- moving a store (export / import)
#
# One JSON object a line (NDJSON). "dnsdb": the object dnsdbq -j prints for a DNSDB
# v2 lookup (rdata a list); "cof": the CIRCL Passive DNS Common Output Format draft
# (draft-dulaunoy-dnsop-passive-dns-cof, rdata a string). Both carry rrname, rrtype,
# rdata, bailiwick (when known), time_first, time_last (UNIX seconds) and count.
MOVE_FORMATS = ("dnsdb", "cof")


def export_line(r: Record, fmt: str) -> str:
    """One tuple as a JSON line (no newline) in *fmt* ("dnsdb" or "cof")."""
    out: dict[str, Any] = {"rrname": r.rrname, "rrtype": type_text(r.rrtype)}
    out["rdata"] = [r.rdata] if fmt == "dnsdb" else r.rdata
    if r.bailiwick:
        out["bailiwick"] = r.bailiwick
    out.update(time_first=r.time_first, time_last=r.time_last, count=r.count)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def export_nx_line(nx: NxRecord) -> str:
    """One NXDOMAIN row as a JSON line (no newline), the same in both formats: the name
    and type asked, ``"rcode": "NXDOMAIN"`` and no ``rdata`` (neither COF nor DNSDB has
    a form for it: a mamori extension that ``parse_line`` reads back)."""
    out: dict[str, Any] = {"rrname": nx.rrname, "rrtype": type_text(nx.rrtype),
                           "rcode": "NXDOMAIN", "time_first": nx.time_first,
                           "time_last": nx.time_last, "count": nx.count}  # fmt: skip
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class BadLineError(ValueError):
    """A line that is not a passive DNS record; ``line``: its number (from 1)."""

    def __init__(self, line: int, why: str) -> None:
        super().__init__(f"line {line}: {why}")
        self.line = line


def parse_line(text: str, fmt: str, line: int) -> list[Record | NxRecord]:
    """The records of one exported line (several when DNSDB rdata lists several; none for
    a blank line or DNSDB SAF framing, ``{"cond": ...}``; an ``NxRecord`` for a line of
    ``export_nx_line``). Raises BadLineError naming *line*."""
    if not text.strip():
        return []
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise BadLineError(line, f"not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise BadLineError(line, "not a JSON object")
    if fmt == "dnsdb":
        if "cond" in obj and "obj" not in obj:
            return []  # SAF framing around a DNSDB v2 answer
        obj = obj.get("obj", obj)
        if not isinstance(obj, dict):
            raise BadLineError(line, '"obj" is not a JSON object')
        for key in ("time_first", "time_last"):  # zone file observations
            if key not in obj and "zone_" + key in obj:
                obj[key] = obj["zone_" + key]
    try:
        if "rcode" in obj:
            return [_nx_record(obj)]
        return list(_records(obj))
    except (ValueError, TypeError) as e:
        raise BadLineError(line, str(e)) from None


def _nx_record(obj: dict[str, Any]) -> NxRecord:
    """An NXDOMAIN row (``export_nx_line``): no rdata; rrtype the type asked (any)."""
    if obj["rcode"] != "NXDOMAIN":
        raise ValueError(f"rcode {obj['rcode']!r}: only NXDOMAIN rows are read")
    missing = [k for k in ("rrname", "rrtype", "time_first", "time_last", "count")
               if k not in obj]  # fmt: skip
    if missing:
        raise ValueError("missing " + ", ".join(missing))
    if obj.get("rdata") not in (None, "", []):
        raise ValueError("an NXDOMAIN row has no rdata")
    name, rtype = obj["rrname"], obj["rrtype"]
    if not isinstance(name, str) or not name.strip("."):
        raise ValueError(f"rrname {name!r} is not a name")
    _check_name("rrname", name)
    if isinstance(rtype, str):
        rtype = type_code(rtype)
    if not _is_int(rtype) or not 0 <= rtype <= 65535:
        raise ValueError(f"rrtype {obj['rrtype']!r} is not a type")
    first, last, count = _times(obj)
    return NxRecord(name.lower().rstrip(".") + ".", rtype, first, last, count)


# The limits of an imported line, the same for SQLite and ClickHouse (docs/howto/
# move-a-passive-dns-store.md): times are UNIX seconds that fit 32 bits unsigned
# (ClickHouse keeps them as UInt32: up to 2106-02-07); a count is at most 2**53 - 1, so
# that adding up counts stays exact (a 64-bit sum takes over 1000 such lines to overflow;
# 2**53 - 1 is also the largest integer JSON readers in JavaScript keep exactly).
TIME_MAX = 2**32 - 1
COUNT_MAX = 2**53 - 1


def _times(obj: dict[str, Any]) -> tuple[int, int, int]:
    """(time_first, time_last, count) of a line; ValueError naming the key and the limit."""
    first, last, count = obj["time_first"], obj["time_last"], obj["count"]
    for key, v in (("time_first", first), ("time_last", last)):
        if not _is_int(v) or not 0 <= v <= TIME_MAX:
            hint = ""
            if _is_int(v) and 0 < v // 1000 <= TIME_MAX:
                hint = f" (milliseconds? {v // 1000} would be {iso(v // 1000)} UTC)"
            raise ValueError(f"{key} {v!r} is not a time in UNIX seconds (0 to {TIME_MAX}){hint}")
    if not _is_int(count) or not 1 <= count <= COUNT_MAX:
        raise ValueError(f"count {count!r} is not a whole number from 1 to {COUNT_MAX} (2**53 - 1)")
    if first > last:
        raise ValueError(f"time_first {first} is after time_last {last}")
    return first, last, count


def _records(obj: dict[str, Any]) -> list[Record]:
    missing = [k for k in ("rrname", "rrtype", "rdata", "time_first", "time_last", "count")
               if k not in obj]  # fmt: skip
    if missing:
        raise ValueError("missing " + ", ".join(missing))
    name, rtype, rdata, bw = obj["rrname"], obj["rrtype"], obj["rdata"], obj.get("bailiwick", "")
    if not isinstance(name, str) or not name.strip("."):
        raise ValueError(f"rrname {name!r} is not a name")
    _check_name("rrname", name)
    if isinstance(rtype, str):
        rtype = type_code(rtype)
    if not _is_int(rtype) or not 0 <= rtype <= 65535:
        raise ValueError(f"rrtype {obj['rrtype']!r} is not a type")
    if rtype in {0, 41} or 128 <= rtype <= 255:
        raise ValueError(f"rrtype {obj['rrtype']!r} is not a record type (RFC 6895: reserved,"
                         " meta or query type)")  # fmt: skip
    rdatas = rdata if isinstance(rdata, list) else [rdata]
    if not rdatas or not all(isinstance(x, str) for x in rdatas):
        raise ValueError("rdata is not a string or a list of strings")
    for x in rdatas:
        _check_rdata(rtype, x)
    if not isinstance(bw, str):
        raise ValueError(f"bailiwick {bw!r} is not a name")
    if bw.strip("."):
        _check_name("bailiwick", bw)
    first, last, count = _times(obj)
    name = name.lower().rstrip(".") + "."
    bw = bw.lower().rstrip(".") + "." if bw.strip(".") else ""
    return [Record(name, rtype, x, bw, first, last, count) for x in rdatas]


def _check_name(what: str, name: str) -> None:
    """ValueError unless *name* is a DNS name in presentation form (ASCII, ``\\DDD``
    escapes): no empty label, labels of at most 63 octets, at most 255 octets in all
    (RFC 1035 2.3.4)."""
    why = ""
    if not name.isascii():
        why = "not ASCII (IDNs are kept in their xn-- form)"
    elif not all("!" <= c <= "~" for c in name):
        c = next(c for c in name if not "!" <= c <= "~")
        why = f"character {c!r} (a space or a control character: write it as \\DDD)"
    else:
        try:
            text_to_name(name if name != "." else "")
        except WireError as e:
            too_long = "255" in str(e)
            why = "longer than 255 octets" if too_long else "an empty label or one over 63 octets"
        except (ValueError, IndexError):
            why = "a bad escape"
    if why:
        raise ValueError(f"{what} {name!r} is not a DNS name: {why}")


_RDATA_NAME_FIELD = {5: (0, 1), 2: (0, 1), 12: (0, 1), 39: (0, 1), 15: (1, 2), 33: (3, 4)}


def _check_rdata(rrtype: int, rdata: str) -> None:
    """ValueError unless *rdata* fits *rrtype* where the store keeps it typed: A/AAAA an
    address, CNAME/NS/PTR/DNAME a name, MX ``PREF NAME``, SRV ``PRIO WEIGHT PORT NAME``
    (the numbers 0-65535). Other types' rdata is kept as text, unchecked."""
    if rrtype in (1, 28):
        version = 4 if rrtype == 1 else 6
        try:
            if "%" in rdata or ipaddress.ip_address(rdata).version != version:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"rdata {rdata!r} is not an IPv{version} address ({type_text(rrtype)})"
            ) from None
        return
    where = _RDATA_NAME_FIELD.get(rrtype)
    if where is None:
        return
    pos, count = where
    fields = rdata.split(" ")
    kind = type_text(rrtype)
    if len(fields) != count or not all(f.isdigit() and int(f) <= 65535 for f in fields[:pos]):
        form = {15: "PREFERENCE NAME", 33: "PRIORITY WEIGHT PORT NAME"}.get(rrtype, "NAME")
        raise ValueError(f"rdata {rdata!r} is not {kind} rdata ({form})")
    _check_name(f"{kind} rdata", fields[pos])


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
