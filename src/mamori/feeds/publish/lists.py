"""A feed's or dataset's entries as lists for other tools.

``hosts`` (``0.0.0.0 name``), ``domains`` (one per line, ``*.name`` for
subtrees, addresses too), ``adblock`` (AdGuard DNS filtering syntax),
``rpz`` (a zone file), ``csv`` (every entry with its provenance) and
``stix`` (a STIX 2.1 bundle of indicators with deterministic ids).

What each says is what the feed's zone enforces: ``rpz`` is that zone's
rules (allow rules, Client-IP and per-type ``mamori-qtype`` rules included);
``adblock`` the block and exception rules in force with their modifiers
(``||name^`` the name and below, ``|name^`` the name, ``||*.name^`` below it
only), which AdGuard reads the same way; ``hosts`` and ``domains`` the names
(and addresses) blocked for every query type once exceptions are applied.
``csv`` and ``stix`` list the listed entries that block for every type. A
format that cannot express a rule (an allow rule in hosts, a network in
adblock, a per-type rule in domains ...) leaves it out and counts it.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TextIO

from mamori.feeds import precedence
from mamori.feeds.dataset import Provenance
from mamori.feeds.modifiers import Modifiers
from mamori.feeds.normalize import Entry
from mamori.feeds.precedence import BLOCK, NAME_KINDS, Verdict
from mamori.feeds.publish import rpz as rpz_out
from mamori.policy.model import QTYPE_LABEL

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
    """Write *rows* (``FeedDB.rows(..., allow=True)``: sorted by value, allow rules
    included) in *fmt*; (rules or entries written, left out)."""
    if fmt in ("csv", "stix"):
        not_listed = [0]
        listed = _listed(rows, not_listed)
        n = _csv(category, listed, out) if fmt == "csv" else _stix(name, category, listed, out)
        return n, not_listed[0]
    blocks: list[Entry] = []
    allows: list[Entry] = []
    for r in rows:
        e = Entry(r.kind, r.value, modifiers=r.modifiers)
        (allows if r.rule == "allow" else blocks).append(e)
    if fmt == "rpz":
        lines = rpz_out.rules(blocks, allows, target)
        out.write(f"$ORIGIN {name}.\n$TTL 300\n")
        out.write("@ SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n@ NS localhost.\n")
        if any(QTYPE_LABEL in line for line in lines):
            out.write(
                f"; NAME.{QTYPE_LABEL} TXT TYPES=TARGET: a rule by query type, applied by"
                " mamori only (BIND and Unbound never match it)\n"
            )
        out.writelines(line + "\n" for line in lines)
        return len(lines), 0
    if fmt == "adblock":
        return _adblock(name, blocks, allows, out)
    if fmt not in ("hosts", "domains"):
        raise ValueError(f"unknown list format {fmt!r} (known: {', '.join(FORMATS)})")
    written = left = 0
    verdicts = precedence.resolve(blocks, allows)
    # A blocked subtree with an exception or a carve-out ($denyallow) below it cannot be
    # written as ``*.name``: a reader of the list would block the excepted names too.
    holed: set[str] = set()
    for v in verdicts:
        if v.kind in NAME_KINDS and (v.by_type or v.default != BLOCK):
            name = v.value
            while "." in name:
                name = name.split(".", 1)[1]
                holed.add(name)
    for v in sorted(verdicts, key=lambda v: (v.value, v.kind)):
        line = _line(fmt, v) if not (v.kind == "wildcard" and v.value in holed) else None
        if line is None:
            left += 1
            continue
        out.write(line + "\n")
        written += 1
    return written, left


def _listed(rows: Iterable[Provenance], left: list[int]) -> Iterator[Provenance]:
    """The rows of listed entries that block for every type (others counted in *left*)."""
    for r in rows:
        m = Modifiers.of(r.modifiers)
        if r.rule == "list" and r.kind != "client" and not m.qtypes and not m.denyallow:
            yield r
        else:
            left[0] += 1


def _adblock(name: str, blocks: list[Entry], allows: list[Entry], out: TextIO) -> tuple[int, int]:
    """The rules in force as AdGuard DNS filtering rules; (written, left out)."""
    refused = {
        (e.kind, e.value, e.modifiers, allow)
        for e, allow, _why in precedence.client_conflicts(blocks, allows)
    }
    lines: list[tuple[str, bool, str]] = []  # (sort key, exception?, rule)
    left = 0
    for allow, items in ((False, blocks), (True, allows)):
        kinds: dict[tuple[str, str], set[str]] = {}
        for e in items:
            mods = f"${e.modifiers}" if e.modifiers else ""
            if e.kind in NAME_KINDS:
                kinds.setdefault((e.value, e.modifiers), set()).add(e.kind)
            elif e.kind == "ip":
                lines.append((e.value, allow, f"||{e.value}^{mods}"))
            elif e.kind == "client" and (e.kind, e.value, e.modifiers, allow) not in refused:
                net = ipaddress.ip_network(e.value)
                who = str(net.network_address) if net.num_addresses == 1 else e.value
                extra = f",{e.modifiers}" if e.modifiers else ""
                lines.append((f"*{who}", allow, f"||*^$client={who}{extra}"))
            else:
                left += 1  # a network (adblock has no CIDR), or a refused client rule
        for (value, text), ks in kinds.items():
            mods = f"${text}" if text else ""
            if len(ks) == 2:
                pattern = f"||{value}^"
            elif "domain" in ks:
                pattern = f"|{value}^"
            else:
                pattern = f"||*.{value}^"
            lines.append((value, allow, pattern + mods))
    out.write(f"! Title: {name}\n! The rules mamori enforces, exceptions included\n")
    for _key, allow, rule in sorted(lines):
        out.write(("@@" if allow else "") + rule + "\n")
    return len(lines), left


def _line(fmt: str, v: Verdict) -> str | None:
    """One blocked name or address in hosts / domains form; None: not expressible."""
    if v.by_type or v.default != BLOCK or v.kind == "client":
        return None  # an allow rule, a rule by query type, a Client-IP rule
    if fmt == "domains":
        return f"*.{v.value}" if v.kind == "wildcard" else v.value
    return f"0.0.0.0 {v.value}" if v.kind == "domain" else None


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
