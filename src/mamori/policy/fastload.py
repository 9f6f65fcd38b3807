"""Fast loader for policy zones made of one-line records.

Feed RPZ files are millions of lines like ``bad.example CNAME .``; parsing
them with dnspython costs ~80 us a line. This loader splits lines itself and
builds the compact index directly; record data other than the special RPZ
CNAME targets (Local-Data) is still parsed by dnspython, one record at a time.

It accepts: comments, blank lines, ``$TTL``, ``$ORIGIN`` equal to the zone,
owners (relative, absolute under the zone, ``@``, blank = previous owner),
optional TTL and class in either order, and an SOA spanning lines in
parentheses. Anything else (``$INCLUDE``, quotes, backslash escapes, other
multi-line records, other ``$ORIGIN``) raises NeedsFullParser and the caller
uses dnspython for the whole file, so both loaders accept the same files.
A record holding bytes that were not UTF-8 (surrogate escapes, see
``dnsutil.textfile``) is a bad record.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import TypeVar

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.ttl

from mamori.dnsutil.textfile import bad_bytes
from mamori.policy import steps as steps_mod
from mamori.policy.model import QTYPE_LABEL, Action, LocalRecord
from mamori.policy.rules import SIMPLE_CODES, SPECIAL_TARGETS, LoadedZone, ZoneError, make_rule

# BIND TTL forms: 300, 1h30m, 1w2d. Written so that a digit run can end only one way
# (``(\d+[smhdw]?)+`` backtracked exponentially on "7777...7C": found by fuzzing).
_TTL_RE = re.compile(r"^(?:\d+[smhdwSMHDW])*\d+[smhdwSMHDW]?$")
_CLASSES = {"IN", "CH", "HS", "CS"}


class NeedsFullParser(Exception):  # noqa: N818 - a signal, not an error
    """The file uses master-file features this loader leaves to dnspython."""


class _BadRecord(ValueError):  # noqa: N818 - reported as file:line
    pass


T = TypeVar("T")
STEP_LINES = 250  # lines parsed between two yields of load_steps (~0.5 ms)


def load_lines(lines: Iterable[str], origin: str, path: Path, on_error: str) -> LoadedZone:
    """Load from lines (a list, or an open file: streamed, nothing kept per line)."""
    return steps_mod.run(load_steps(lines, origin, path, on_error))


def load_steps(
    lines: Iterable[str], origin: str, path: Path, on_error: str
) -> Generator[None, None, LoadedZone]:
    """The loader as a generator: yields every STEP_LINES lines, returns the zone.

    A running service drives it from its event loop with a pause at every
    yield, so queries keep being answered while a big zone loads.
    """
    apex = dns.name.from_text(origin)
    zone_text = apex.to_text().lower()
    out = LoadedZone(zone_text)
    default_ttl: int | None = None
    last_owner: str | None = None
    pending: dict[str, list[LocalRecord]] = {}  # owner -> Local-Data records
    it = iter(lines)
    lineno = 0
    for raw in it:
        lineno += 1
        if not lineno % STEP_LINES:
            yield
        if '"' in raw or "\\" in raw:
            raise NeedsFullParser
        line = raw.split(";", 1)[0]
        if not line.strip():
            continue
        try:
            if line[0] == "$":
                default_ttl = _directive(line, zone_text, default_ttl)
                continue
            if "(" in line:
                if not re.search(r"\bSOA\b", line, re.IGNORECASE):
                    raise NeedsFullParser
                start = lineno
                while ")" not in line:  # the SOA spans lines
                    nxt = next(it, None)
                    if nxt is None:
                        raise _BadRecord(f"unbalanced parenthesis (opened on line {start})")
                    lineno += 1
                    line += " " + nxt.split(";", 1)[0]
                line = line.replace("(", " ").replace(")", " ")
            if not line.isascii():
                why = bad_bytes(line)
                if why is not None:
                    raise _BadRecord(why)
            tokens = line.split()
            if line[0] in " \t":
                if last_owner is None:
                    raise _BadRecord("record without an owner name")
                owner = last_owner
            else:
                owner = _relative(tokens.pop(0), zone_text)
                last_owner = owner
            ttl, rtype, rdata = _fields(tokens, default_ttl)
            if owner == "":
                _apex_record(out, rtype, rdata, ttl, apex)
                continue
            _record(out, owner, rtype, rdata, ttl, apex, pending)
        except _BadRecord as e:
            reason = f"{path}:{lineno}: {e}"
            if on_error != "skip":
                raise ZoneError(reason) from None
            out.skipped.append(reason)
    if out.soa is None:
        raise ZoneError(f"{path}: the zone has no SOA record at its origin {zone_text}")
    for owner, records in pending.items():
        _add(out, owner, Action.LOCAL_DATA, tuple(records), path, on_error)
    return out


def _directive(line: str, zone_text: str, default_ttl: int | None) -> int | None:
    parts = line.split()
    word = parts[0].upper()
    if word == "$TTL" and len(parts) == 2:
        try:
            return int(dns.ttl.from_text(parts[1]))
        except dns.exception.DNSException as e:
            raise _BadRecord(f"bad $TTL: {e}") from None
    if word == "$ORIGIN" and len(parts) == 2 and parts[1].lower().rstrip(".") + "." == zone_text:
        return default_ttl
    raise NeedsFullParser


def _relative(owner: str, zone_text: str) -> str:
    """Owner relative to the zone ("" = apex), lowercased; _BadRecord if outside it."""
    o = owner.lower()
    if o == "@":
        return ""
    if o.endswith("."):
        if o == zone_text:
            return ""
        if not o.endswith("." + zone_text):
            raise _BadRecord(f"owner {owner} is not in the zone {zone_text}")
        return o[: -len(zone_text) - 1]
    return o


def _fields(tokens: list[str], default_ttl: int | None) -> tuple[int, str, list[str]]:
    ttl = None
    for _ in range(2):  # TTL and class, in either order
        if tokens and tokens[0].upper() in _CLASSES:
            if tokens[0].upper() != "IN":
                raise _BadRecord(f"class {tokens[0]} in a policy zone")
            tokens.pop(0)
        elif tokens and tokens[0][:1].isdigit() and _TTL_RE.match(tokens[0]):
            try:
                ttl = int(dns.ttl.from_text(tokens.pop(0)))
            except dns.exception.DNSException as e:
                raise _BadRecord(f"bad TTL: {e}") from None
    if not tokens:
        raise _BadRecord("record has no type")
    ttl = ttl if ttl is not None else default_ttl
    if ttl is None:
        raise _BadRecord("no TTL and no $TTL")
    return ttl, tokens[0].upper(), tokens[1:]


def _rdata(rtype: str, rdata: list[str], apex: dns.name.Name) -> dns.rdata.Rdata:
    try:
        rdtype = dns.rdatatype.from_text(rtype)
        return dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, " ".join(rdata), origin=apex, relativize=False
        )
    except (dns.exception.DNSException, ValueError) as e:
        raise _BadRecord(f"bad {rtype} record: {e}") from None


def _apex_record(
    out: LoadedZone, rtype: str, rdata: list[str], ttl: int, apex: dns.name.Name
) -> None:
    if rtype == "SOA":
        rd = _rdata(rtype, rdata, apex)
        out.soa = LocalRecord(dns.rdatatype.SOA, ttl, rd)
        out.serial = rd.serial  # type: ignore[attr-defined]
    elif rtype == "NS":
        out.apex_ns.append(LocalRecord(dns.rdatatype.NS, ttl, _rdata(rtype, rdata, apex)))
    else:
        _rdata(rtype, rdata, apex)  # validated, otherwise ignored (as BIND does at the apex)


def _record(
    out: LoadedZone,
    owner: str,
    rtype: str,
    rdata: list[str],
    ttl: int,
    apex: dns.name.Name,
    pending: dict[str, list[LocalRecord]],
) -> None:
    if rtype == "CNAME" and len(rdata) == 1:
        target = rdata[0].lower()
        action = SPECIAL_TARGETS.get(target)
        if action is None and target.rstrip(".") in (owner, f"{owner}.{out.name}".rstrip(".")):
            action = Action.PASSTHRU  # legacy passthru: CNAME to the name itself
        if action is not None:
            if owner in pending:
                raise _BadRecord(f"{owner}: CNAME and other data")
            qkey = _qname_key(owner)
            if qkey is None:  # other trigger kinds, or unusual labels: the general path
                _add(out, owner, action, (), None, "refuse")
            else:  # the bulk of a feed: straight into the index, no objects
                key, wildcard = qkey
                (out.wild if wildcard else out.exact)[key] = SIMPLE_CODES[action]
                if out.simple_ttl is None:
                    out.simple_ttl = ttl
            return
    qkey = _qname_key(owner)
    if qkey is not None and qkey[0] in (out.wild if qkey[1] else out.exact):
        raise _BadRecord(f"{owner}: CNAME and other data")
    rd = _rdata(rtype, rdata, apex)
    pending.setdefault(owner, []).append(LocalRecord(rd.rdtype, ttl, rd))


_TRIGGER_SUFFIXES = ("rpz-client-ip", "rpz-ip", "rpz-nsdname", "rpz-nsip", QTYPE_LABEL)


def _qname_key(owner: str) -> tuple[bytes, bool] | None:
    """(wire key, wildcard) of a plain QNAME owner; None for anything else."""
    try:
        raw = owner.encode("ascii")
    except UnicodeEncodeError:
        return None
    parts = raw.split(b".")
    if parts[-1].decode() in _TRIGGER_SUFFIXES:
        return None
    wildcard = parts[0] == b"*"
    if wildcard:
        parts = parts[1:]
        if parts == [b""]:
            return b"\x00", True  # "*" alone: the root wildcard
    if b"*" in raw[2 if wildcard else 0 :]:
        return None
    out = bytearray()
    for p in parts:
        if not 0 < len(p) < 64:
            return None  # empty or long label: let the general path report it
        out.append(len(p))
        out += p
    out.append(0)
    if len(out) > 255:
        return None
    return bytes(out), wildcard


def _add(
    out: LoadedZone,
    owner: str,
    action: Action,
    records: tuple[LocalRecord, ...],
    path: Path | None,
    on_error: str,
) -> None:
    if len(records) > 1 and any(r.rdtype == dns.rdatatype.CNAME for r in records):
        _skip_or_raise(out, f"{path}: {owner}: CNAME and other data", on_error)
        return
    try:
        rel = dns.name.from_text(owner, origin=None)
        labels = [lb.decode("ascii").lower() for lb in rel.labels]
        rule, net = make_rule(out.name, rel, labels, action, records)
        out.add(rule, net)
    except (ValueError, dns.exception.DNSException) as e:
        if path is None:
            raise _BadRecord(str(e)) from None
        _skip_or_raise(out, f"{path}: {owner}: {e}", on_error)


def _skip_or_raise(out: LoadedZone, reason: str, on_error: str) -> None:
    if on_error != "skip":
        raise ZoneError(reason)
    out.skipped.append(reason)
