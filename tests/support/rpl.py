"""Reader of Unbound's testbound scenario files (.rpl), for the RPZ replay harness.

Only what the RPZ scenarios use: the config's ``rpz:`` blocks (with inline
zone files), ``server:`` options, RANGE/ENTRY upstream answers and STEP
QUERY / CHECK_ANSWER pairs. The format is Unbound's (testcode/replay.h);
this is our own reader of it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

DEFAULT_TTL = 3600


@dataclass
class RpzZone:
    name: str
    text: str = ""
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Entry:
    match: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # REPLY words: QR AA RD RA TC ... and rcode
    sections: dict[str, list[dns.rrset.RRset]] = field(default_factory=dict)

    @property
    def rcode(self) -> str:
        codes = {"NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "FORMERR", "NOTIMP", "YXDOMAIN"}
        return next((f for f in self.flags if f in codes), "NOERROR")

    def question(self) -> tuple[dns.name.Name, int]:
        q = self.sections["QUESTION"][0]
        return q.name, q.rdtype


@dataclass
class Step:
    number: int
    kind: str  # QUERY, CHECK_ANSWER, or another step type (unsupported here)
    address: str | None
    entry: Entry | None


@dataclass
class Scenario:
    path: Path
    server: dict[str, str] = field(default_factory=dict)
    rpz: list[RpzZone] = field(default_factory=list)
    config_words: set[str] = field(default_factory=set)
    upstream: list[Entry] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


def parse(path: Path) -> Scenario:
    lines = path.read_text().splitlines()
    sc = Scenario(path)
    i = 0
    block = ""
    while i < len(lines) and lines[i].strip() != "CONFIG_END":
        raw = lines[i]
        line = raw.split(";", 1)[0].strip() if not raw.startswith("TEMPFILE") else raw.strip()
        i += 1
        if not line:
            continue
        if line.startswith("TEMPFILE_CONTENTS"):
            body = []
            while lines[i].strip() != "TEMPFILE_END":
                body.append(lines[i])
                i += 1
            i += 1
            sc.rpz[-1].text = "\n".join(body) + "\n"
            continue
        if line.startswith("TEMPFILE_NAME"):
            continue
        if line.endswith(":") and " " not in line:
            block = line[:-1]
            if block == "rpz":
                sc.rpz.append(RpzZone(""))
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip().strip('"')
        sc.config_words.add(f"{block}.{key}")
        if block == "rpz":
            if key == "name":
                sc.rpz[-1].name = value
            else:
                sc.rpz[-1].options[key] = value
        elif block == "server":
            sc.server[key] = value
    in_range = False
    while i < len(lines):
        line = lines[i].split(";", 1)[0].strip()
        i += 1
        if line.startswith("RANGE_BEGIN"):
            in_range = True
        elif line.startswith("RANGE_END"):
            in_range = False
        elif line.startswith("ENTRY_BEGIN") and in_range:
            entry, i = _entry(lines, i)
            sc.upstream.append(entry)
        elif line.startswith("STEP"):
            words = line.split()
            address = words[words.index("ADDRESS") + 1] if "ADDRESS" in words else None
            step = Step(int(words[1]), words[2], address, None)
            if words[2] in ("QUERY", "CHECK_ANSWER"):
                while not lines[i].strip().startswith("ENTRY_BEGIN"):
                    i += 1
                step.entry, i = _entry(lines, i + 1)
            sc.steps.append(step)
    return sc


def _entry(lines: list[str], i: int) -> tuple[Entry, int]:
    e = Entry()
    section = ""
    while lines[i].strip() != "ENTRY_END":
        raw = lines[i]
        i += 1
        line = _strip_comment(raw).strip()
        if not line:
            continue
        word = line.split()[0]
        if word == "MATCH":
            e.match = line.split()[1:]
        elif word == "REPLY":
            e.flags = line.split()[1:]
        elif word == "ADJUST":
            continue
        elif word == "SECTION":
            section = line.split()[1]
            e.sections.setdefault(section, [])
        elif section:
            e.sections[section].append(_rr(line, section == "QUESTION"))
    return e, i + 1


def _strip_comment(line: str) -> str:
    quoted = False
    for n, c in enumerate(line):
        if c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            return line[:n]
    return line


def _rr(line: str, question: bool) -> dns.rrset.RRset:
    tokens = shlex.split(line, posix=False)
    name = dns.name.from_text(tokens.pop(0))
    ttl = DEFAULT_TTL
    if tokens and tokens[0].isdigit():
        ttl = int(tokens.pop(0))
    if tokens and tokens[0].upper() == "IN":
        tokens.pop(0)
    rdtype = dns.rdatatype.from_text(tokens.pop(0))
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
    if not question:
        rd = dns.rdata.from_text(
            dns.rdataclass.IN, rdtype, " ".join(tokens), origin=dns.name.root, relativize=False
        )
        rrset.add(rd, ttl)
    return rrset
