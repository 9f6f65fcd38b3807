"""RPZ master files -> rules.

Zone files are RFC 1035 master files ($ORIGIN, $TTL, $INCLUDE, escapes, mixed
case), parsed with dnspython. Each owner name below the apex is one rule; the
trigger comes from its suffix (``rpz-client-ip``, ``rpz-ip``, ``rpz-nsdname``,
``rpz-nsip``, otherwise QNAME), the action from its records.

A bad record is an error naming file:line. With ``on_error = "refuse"`` the
whole zone is refused (the caller keeps the previous version serving); with
``"skip"`` the bad line is reported and left out, and the rest loads.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from mamori.dnsutil import textfile
from mamori.policy import fastload
from mamori.policy.model import Action, LocalRecord
from mamori.policy.rules import LoadedZone, ZoneError, action_of, make_rule
from mamori.policy.steps import run

__all__ = ["LoadedZone", "ZoneError", "load", "load_steps", "load_with_dnspython"]

MAX_SKIPPED = 1000


def load(path: Path, origin: str, on_error: str = "refuse") -> LoadedZone:
    """Read a policy zone file; raise ZoneError (file:line: reason).

    Files made of one-line records (what feeds and most local zones are) go
    through the fast line loader; anything else through dnspython's parser.
    The text is decoded by ``dnsutil.textfile``: a byte-order mark is ignored,
    UTF-16/32 with one decoded, and a record holding bytes that are not UTF-8
    is a bad record (file:line, refused or skipped by *on_error*).
    """

    return run(load_steps(path, origin, on_error))


def load_steps(path: Path, origin: str, on_error: str) -> Generator[None, None, LoadedZone]:
    """``load`` as a generator that yields now and then (see fastload.load_steps).

    The dnspython fallback for unusual files runs in one go, without yields.
    """
    try:
        with path.open("rb") as raw:
            encoding = textfile.encoding_of(raw.read(4))
        with path.open(encoding=encoding, errors=textfile.ERRORS) as f:
            return (yield from fastload.load_steps(f, origin, path, on_error))
    except fastload.NeedsFullParser:
        pass
    except (OSError, UnicodeDecodeError) as e:
        raise ZoneError(f"{path}: cannot read: {e}") from e
    try:
        text = textfile.decode(path.read_bytes())
    except (OSError, UnicodeDecodeError) as e:
        raise ZoneError(f"{path}: cannot read: {e}") from e
    return load_with_dnspython(text, origin, path, on_error)


def load_with_dnspython(
    text: str, origin: str, path: Path, on_error: str, include: bool = True
) -> LoadedZone:
    """The general loader: every master-file feature dnspython knows.

    *include* False refuses ``$INCLUDE`` (text from elsewhere, e.g. a feed, must
    not read local files). Raises ZoneError (file:line: why).
    """
    lines = [ln.rstrip("\r\n") for ln in textfile.lines(text)]
    spans = record_spans(lines)
    skipped: list[str] = []
    if not text.isascii():
        skipped += _not_utf8(lines, spans, path, on_error)
    zone: dns.zone.Zone | None = None
    left_out: set[tuple[int, int]] = set()
    for _ in range(MAX_SKIPPED + 1):
        result = _parse(lines, origin, path, include)
        if isinstance(result, dns.zone.Zone):
            zone = result
            break
        line, msg = result
        span = _culprit(lines, spans, line, origin, path, include)
        where = f"{path}:{span[0] + 1}" if span else f"{path}:{line}"
        reason = f"{where}: {msg}"
        if on_error != "skip" or span is None or span in left_out:
            raise ZoneError(reason)  # (left out already and still failing: no progress)
        left_out.add(span)
        skipped.append(reason)
        for i in range(span[0], span[1] + 1):
            lines[i] = ";" + lines[i]  # leave the record out and parse again
    if zone is None:
        raise ZoneError(f"{path}: more than {MAX_SKIPPED} bad records")
    return _rules(zone, origin, skipped, str(path), on_error)


def _not_utf8(
    lines: list[str], spans: list[tuple[int, int]], path: Path, on_error: str
) -> list[str]:
    """Records holding bytes that were not UTF-8 (outside comments): ZoneError, or with
    ``skip`` each one commented out in *lines* and reported (file:line: why)."""
    out = []
    for first, last in spans:
        for i in range(first, last + 1):
            why = textfile.bad_bytes(_strip_comment(lines[i]))
            if why is None:
                continue
            if on_error != "skip":
                raise ZoneError(f"{path}:{i + 1}: {why}")
            out.append(f"{path}:{i + 1}: {why}")
            for j in range(first, last + 1):
                lines[j] = ";" + lines[j]
            break
    return out


def _parse(
    lines: list[str], origin: str, path: Path, include: bool = True
) -> dns.zone.Zone | tuple[int, str]:
    """The zone, or (reported line, message) of the first error."""
    if not include:
        for no, line in enumerate(lines, 1):
            if line.lstrip().upper().startswith("$INCLUDE"):
                return no, "$INCLUDE is not allowed here (the text comes from a feed)"
    try:
        return dns.zone.from_text(
            "\n".join(lines) + "\n",
            origin=origin,
            relativize=False,
            filename=str(path),
            allow_include=include,
            check_origin=True,
        )
    except (dns.exception.DNSException, ValueError) as e:
        m = re.match(rf"{re.escape(str(path))}:(\d+): (.*)", str(e), re.DOTALL)
        if not m:
            return 0, str(e)
        return int(m.group(1)), m.group(2)


def _culprit(
    lines: list[str],
    spans: list[tuple[int, int]],
    line: int,
    origin: str,
    path: Path,
    include: bool = True,
) -> tuple[int, int] | None:
    """The record span (0-based first, last line) an error at *line* belongs to.

    dnspython reports rdata errors after consuming the newline (one line late)
    and owner/type errors on the line itself: the record ending just before
    *line* is the culprit if leaving it out lets parsing get past *line*.
    """
    if line <= 0:
        return None
    before = next((sp for sp in reversed(spans) if sp[1] == line - 2), None)
    here = next((sp for sp in spans if sp[0] <= line - 1 <= sp[1]), None)
    if before is not None:
        trial = list(lines)
        for i in range(before[0], before[1] + 1):
            trial[i] = ";" + trial[i]
        result = _parse(trial, origin, path, include)
        if isinstance(result, dns.zone.Zone) or result[0] > line:
            return before
    return here or before


def record_spans(lines: list[str]) -> list[tuple[int, int]]:
    """0-based (first, last) line of each record or directive, honouring ( ), quotes, ;."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = None
    for no, raw in enumerate(lines):
        code = _strip_comment(raw)
        if start is None:
            if not code.strip():
                continue
            start = no
        depth += code.count("(") - code.count(")")
        if depth <= 0:
            spans.append((start, no))
            start, depth = None, 0
    if start is not None:
        spans.append((start, len(lines) - 1))
    return spans


def _strip_comment(line: str) -> str:
    quoted = False
    escaped = False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            return line[:i]
    return line


def _rules(
    zone: dns.zone.Zone, origin: str, skipped: list[str], fname: str, on_error: str
) -> LoadedZone:
    apex = dns.name.from_text(origin)
    soa_rds = zone.get_rdataset(apex, dns.rdatatype.SOA)
    soa = LocalRecord(dns.rdatatype.SOA, soa_rds.ttl, soa_rds[0]) if soa_rds else None
    serial = soa_rds[0].serial if soa_rds else 0
    out = LoadedZone(apex.to_text(), soa, serial, skipped=skipped)
    ns_rds = zone.get_rdataset(apex, dns.rdatatype.NS)
    if ns_rds is not None:
        out.apex_ns = [LocalRecord(dns.rdatatype.NS, ns_rds.ttl, rd) for rd in ns_rds]
    for name, node in zone.nodes.items():
        if name == apex:
            continue
        rel = name.relativize(apex)
        labels = [lb.decode("ascii", "backslashreplace").lower() for lb in rel.labels]
        action, records = _action(node, rel.to_text())
        if action is None:
            continue
        if not records and out.simple_ttl is None and node.rdatasets:
            out.simple_ttl = node.rdatasets[0].ttl
        try:
            rule, net = make_rule(out.name, rel, labels, action, records)
            out.add(rule, net)
        except ValueError as e:
            reason = f"{fname}: {rel.to_text()}: {e}"
            if on_error != "skip":
                raise ZoneError(reason) from None
            out.skipped.append(reason)
    return out


def _action(node: dns.node.Node, owner: str) -> tuple[Action | None, tuple[LocalRecord, ...]]:
    records = [
        LocalRecord(rds.rdtype, rds.ttl, rd)
        for rds in node.rdatasets
        if rds.rdclass == dns.rdataclass.IN
        for rd in rds
    ]
    return action_of(records, owner)
