"""A feed's or dataset's entries as lists for other tools.

``hosts`` (``0.0.0.0 name``), ``domains`` (one per line, ``*.name`` for
subtrees, addresses too), ``adblock`` (AdGuard Home / uBlock DNS syntax:
``|name^`` exact, ``||*.name^`` the names below, ``||name^`` the name and
below), ``rpz`` (a zone file),
``csv`` (every entry with its provenance) and ``stix`` (a STIX 2.1 bundle of
indicators with deterministic ids). Formats that cannot express an entry
(addresses in hosts/adblock) leave it out and count it.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO

from mamori.feeds.dataset import Provenance
from mamori.feeds.normalize import Entry
from mamori.feeds.publish import rpz as rpz_out

FORMATS = ("hosts", "domains", "adblock", "rpz", "csv", "stix")
_NS = uuid.UUID("6f1c3b7e-2a55-4c1e-9a55-6d616d6f7269")  # ids of our STIX objects


def write(
    fmt: str,
    name: str,
    category: str,
    rows: Iterable[Provenance],
    out: TextIO,
    target: str = ".",
) -> tuple[int, int]:
    """Write the entries of *rows* (sorted by value) in *fmt*; (written, left out)."""
    if fmt == "csv":
        return _csv(category, rows, out), 0
    if fmt == "stix":
        return _stix(name, category, rows, out), 0
    entries = _merge(rows)
    if fmt == "adblock":
        return _adblock([e for e, _ in entries], out)
    if fmt == "rpz":
        lines = rpz_out.rules([e for e, _ in entries], [], target)
        out.write(f"$ORIGIN {name}.\n$TTL 300\n")
        out.write("@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n@ NS localhost.\n")
        out.writelines(line + "\n" for line in lines)
        return len(lines), 0
    written = left = 0
    for e, _ in entries:
        line = _line(fmt, e)
        if line is None:
            left += 1
            continue
        out.write(line + "\n")
        written += 1
    return written, left


def _line(fmt: str, e: Entry) -> str | None:
    if fmt == "domains":
        return f"*.{e.value}" if e.kind == "wildcard" else e.value
    if fmt == "hosts":
        return f"0.0.0.0 {e.value}" if e.kind == "domain" else None
    raise ValueError(f"unknown list format {fmt!r} (known: {', '.join(FORMATS)})")


def _adblock(entries: list[Entry], out: TextIO) -> tuple[int, int]:
    """AdGuard DNS filtering syntax: ``|name^`` the name alone, ``||*.name^`` the names
    below it (not the name: an RPZ ``*.`` rule), ``||name^`` both; addresses are left out.

    *entries* come sorted by value: a name's ``domain`` and ``wildcard`` are neighbours.
    """
    written = left = 0
    for i, e in enumerate(entries):
        if e.kind == "domain":
            nxt = entries[i + 1] if i + 1 < len(entries) else None
            both = nxt is not None and nxt.kind == "wildcard" and nxt.value == e.value
            out.write(f"||{e.value}^\n" if both else f"|{e.value}^\n")
        elif e.kind == "wildcard":
            prev = entries[i - 1] if i else None
            if prev is None or prev.kind != "domain" or prev.value != e.value:
                out.write(f"||*.{e.value}^\n")
        else:
            left += 1
            continue
        written += 1
    return written, left


def _merge(rows: Iterable[Provenance]) -> list[tuple[Entry, list[Provenance]]]:
    """Rows of several feeds for one entry, together (rows come sorted by value)."""
    out: list[tuple[Entry, list[Provenance]]] = []
    for r in rows:
        e = Entry(r.kind, r.value)
        if out and out[-1][0] == e:
            out[-1][1].append(r)
        else:
            out.append((e, [r]))
    return out


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _CsvLines:
    """RFC 4180 records ending in LF. ``csv.writer`` quotes a field holding a line break
    only when the break is in its line terminator: records are written with CRLF
    (so both CR and LF get quoted), then end in LF."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.buf = io.StringIO()
        self.writer = csv.writer(self.buf, lineterminator="\r\n")

    def writerow(self, row: list[str]) -> None:
        self.buf.seek(0)
        self.buf.truncate()
        self.writer.writerow(row)
        self.out.write(self.buf.getvalue()[:-2] + "\n")


def _csv(category: str, rows: Iterable[Provenance], out: TextIO) -> int:
    w = _CsvLines(out)
    w.writerow(
        ["value", "kind", "category", "feeds", "first_listed", "last_seen", "reason", "reference"]
    )
    n = 0
    for e, prov in _merge(rows):
        w.writerow(
            [
                f"*.{e.value}" if e.kind == "wildcard" else e.value,
                e.kind,
                category,
                " ".join(p.feed for p in prov),
                _iso(min(p.first_listed for p in prov)),
                _iso(max(p.last_seen for p in prov)),
                next((p.reason for p in prov if p.reason), ""),
                next((p.reference for p in prov if p.reference), ""),
            ]
        )
        n += 1
    return n


_STIX_TYPE = {"domain": "domain-name", "wildcard": "domain-name", "ip": "", "cidr": ""}
_INDICATOR_TYPE = {
    "phishing": "malicious-activity",
    "botnet-cc": "malicious-activity",
    "malware": "malicious-activity",
    "cryptominer": "malicious-activity",
    "spam": "anomalous-activity",
    "adware": "anomalous-activity",
}


def _stix_pattern(kind: str, e: Entry) -> str:
    """``[domain-name:value = 'x']``; a wildcard (the names below, as the RPZ ``*.`` rule)
    ``LIKE '%.x'``, or, when the name holds ``_`` (one character in LIKE),
    ``MATCHES '^.+\\.x$'`` with its dots escaped. Names hold no quote or backslash."""
    if e.kind != "wildcard":
        return f"[{kind}:value = '{e.value}']"
    if "_" not in e.value:
        return f"[{kind}:value LIKE '%.{e.value}']"
    regex = "^.+\\." + e.value.replace(".", "\\.") + "$"
    return f"[{kind}:value MATCHES '{regex.replace(chr(92), chr(92) * 2)}']"


def _stix(name: str, category: str, rows: Iterable[Provenance], out: TextIO) -> int:
    """A STIX 2.1 bundle, written object by object (no whole bundle in memory)."""
    now = _iso(int(datetime.now(UTC).timestamp()))
    identity = f"identity--{uuid.uuid5(_NS, 'mamori')}"
    out.write(f'{{"type": "bundle", "id": "bundle--{uuid.uuid4()}", "objects": [\n')
    out.write(
        json.dumps(
            {
                "type": "identity",
                "spec_version": "2.1",
                "id": identity,
                "created": "2026-01-01T00:00:00.000Z",
                "modified": "2026-01-01T00:00:00.000Z",
                "name": "mamori",
                "identity_class": "system",
            }
        )
    )
    n = 0
    for e, prov in _merge(rows):
        if e.kind in ("ip", "cidr"):
            kind = "ipv6-addr" if ":" in e.value else "ipv4-addr"
        else:
            kind = _STIX_TYPE[e.kind]
        pattern = _stix_pattern(kind, e)
        first = _iso(min(p.first_listed for p in prov))
        reason = next((p.reason for p in prov if p.reason), "")
        ind: dict[str, object] = {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(_NS, f'{name}/{e.kind}/{e.value}')}",
            "created_by_ref": identity,
            "created": f"{first[:-1]}.000Z",
            "modified": now.replace("Z", ".000Z"),
            "name": reason or f"{category} {e.value}",
            "indicator_types": [_INDICATOR_TYPE.get(category, "unknown")],
            "pattern": pattern,
            "pattern_type": "stix",
            "valid_from": f"{first[:-1]}.000Z",
            "labels": [category, *sorted({p.feed for p in prov})],
        }
        ref = next((p.reference for p in prov if p.reference.startswith("http")), "")
        if ref:
            ind["external_references"] = [{"source_name": "feed", "url": ref}]
        out.write(",\n" + json.dumps(ind))
        n += 1
    out.write("\n]}\n")
    return n
