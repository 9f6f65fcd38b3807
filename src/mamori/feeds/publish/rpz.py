"""A feed's entries as an RPZ zone file (the policy zone the firewall applies).

Names become QNAME rules (``name CNAME .``, wildcards ``*.name``), addresses
and networks Response-IP rules (``rpz-ip``), client networks Client-IP rules
(``rpz-client-ip``), allow rules ``rpz-passthru``. Block and allow rules are
resolved first (``feeds.precedence``): one record set per owner, whatever the
list says. A verdict that depends on the query type (``$dnstype``), or an
owner with no rule that hides an enclosing wildcard (``$denyallow``), is a
``NAME.mamori-qtype TXT "TYPES=TARGET" ...`` rule (policy/rules.py,
``qtype_branches``), which only mamori applies. The serial is the previous
one plus one (RFC 1982 addition: 4294967295 is followed by 0, which
secondaries take as newer), and only when the content changed.

A list means: a name is listed when it is listed itself or below a listed
``*.`` wildcard (the closest wins). A policy zone means less: BIND, Unbound
and mamori match its wildcards as RFC 4592 says, so ``*.example.com`` stops
at any name of the zone below ``example.com`` (an owner, or an empty
non-terminal above one). ``cover_closest_enclosers`` writes the zone so that
it means what the list means.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

import dns.rdatatype

from mamori.atomicfile import replacing
from mamori.dnsutil import serial as rfc1982
from mamori.feeds import precedence
from mamori.feeds.normalize import Entry
from mamori.feeds.precedence import ALLOW, BLOCK, NONE, Verdict
from mamori.policy.model import QTYPE_LABEL


def ip_owner(value: str, suffix: str = "rpz-ip") -> str:
    """``192.0.2.0/24`` -> ``24.0.2.0.192.rpz-ip`` (IPv6: ``zz`` for the longest zero run).

    *suffix* ``rpz-client-ip`` for a Client-IP owner.
    """
    net = ipaddress.ip_network(
        value if "/" in value else f"{value}/{32 if ':' not in value else 128}"
    )
    if net.version == 4:
        return (
            f"{net.prefixlen}."
            + ".".join(reversed(str(net.network_address).split(".")))
            + "."
            + suffix
        )
    words = net.network_address.exploded.split(":")
    compressed = str(net.network_address)
    if "::" in compressed:
        head, tail = compressed.split("::")
        n_head = len(head.split(":")) if head else 0
        n_tail = len(tail.split(":")) if tail else 0
        words = [w.lstrip("0") or "0" for w in words]
        words = [*words[:n_head], "zz", *words[8 - n_tail :]]
    else:
        words = [w.lstrip("0") or "0" for w in words]
    return f"{net.prefixlen}." + ".".join(reversed(words)) + "." + suffix


def rules(entries: Iterable[Entry], exceptions: Iterable[Entry], target: str) -> list[str]:
    """Sorted rule lines (owner relative to the zone), one record per owner.

    *entries* block (CNAME *target*), *exceptions* allow (``rpz-passthru.``),
    resolved by ``precedence.resolve``.
    """
    entries, exceptions = list(entries), list(exceptions)
    if precedence.blocks_only(entries, exceptions):
        out: set[str] = set()
        for e in entries:
            if e.kind == "domain":
                out.add(f"{e.value} CNAME {target}")
            elif e.kind == "wildcard":
                out.add(f"*.{e.value} CNAME {target}")
            else:
                out.add(f"{ip_owner(e.value)} CNAME {target}")
        return sorted(cover_closest_enclosers(out))
    rdata = {BLOCK: target, ALLOW: "rpz-passthru.", NONE: "-"}
    verdicts = precedence.resolve(entries, exceptions)
    return sorted(cover_closest_enclosers(line for v in verdicts for line in lines(v, rdata)))


def lines(v: Verdict, rdata: dict[str, str]) -> list[str]:
    """The zone lines of one owner's verdict (*rdata*: verdict -> CNAME target or ``-``)."""
    if v.kind == "domain":
        owner = v.value
    elif v.kind == "wildcard":
        owner = f"*.{v.value}"
    else:
        suffix = "rpz-client-ip" if v.kind == "client" else "rpz-ip"
        return [f"{ip_owner(v.value, suffix)} CNAME {rdata[v.default]}"]
    if not v.by_type and v.default != NONE:
        return [f"{owner} CNAME {rdata[v.default]}"]
    groups: dict[str, list[str]] = {}
    for qtype, verdict in v.by_type:
        groups.setdefault(verdict, []).append(
            dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
        )
    strings = [f"{'|'.join(types)}={rdata[verdict]}" for verdict, types in sorted(groups.items())]
    strings.append(f"*={rdata[v.default]}")
    return [f"{owner}.{QTYPE_LABEL} TXT {' '.join(strings)}"]


def write_zone(path: Path, origin: str, lines: list[str], ttl: int = 300) -> tuple[int, bool]:
    """Write the zone if its rules or its origin changed; (serial, changed)."""
    old_serial, old_rules, old_origin = _read(path)
    if old_rules == lines and old_origin == origin:
        return old_serial, False
    serial = rfc1982.add(old_serial, 1)
    with replacing(path) as f:  # the old zone, or the new one: never half
        f.write(f"; compiled by mamori from feed data\n$ORIGIN {origin}\n$TTL {ttl}\n")
        f.write(f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 60\n")
        f.write("@ NS localhost.\n")
        for line in lines:
            f.write(line + "\n")
    return serial, True


def _read(path: Path) -> tuple[int, list[str] | None, str]:
    """(serial, rule lines, $ORIGIN) of a zone file written by ``write_zone``."""
    if not path.exists():
        return 0, None, ""
    serial, out, origin = 0, [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("@ SOA"):
            serial = int(line.split()[4])
        elif line.startswith("$ORIGIN "):
            origin = line.split()[1]
        elif line and not line.startswith((";", "$", "@")):
            out.append(line)
    return serial, out, origin


_TRIGGER_LABELS = ("rpz-ip", "rpz-nsip", "rpz-client-ip", "rpz-nsdname")


def cover_closest_enclosers(lines: Iterable[str]) -> set[str]:
    """Rule lines (``owner rdata``, owners relative) that mean, matched as RFC 4592
    says, what *lines* mean as a list (a wildcard covers every name below it).

    Two steps. Entries a wildcard above them already covers with the same
    records are left out (``a.b.example.com CNAME .`` below ``*.example.com
    CNAME .``): they would only hide the wildcard from the names below them.
    Then every name that still exists in the zone below a wildcard -- an
    owner, or an empty non-terminal above one -- gets the records of the
    closest wildcard above it, for itself when it has no rule and as
    ``*.name`` when it has no wildcard (an allow rule for ``a.b.example.com``
    below ``*.example.com`` adds ``b.example.com``, ``*.b.example.com`` and
    ``*.a.b.example.com`` with the wildcard's records). A zone without
    wildcards is returned as it is; IP and NS trigger owners are left alone.
    A rule by query type (``NAME.mamori-qtype TXT ...``) is a rule of NAME
    here, as mamori applies it: NAME exists, and a wildcard's records given
    to names below it are written in the same typed form.
    """
    out = set(lines)
    exact: dict[str, set[str]] = {}
    wild: dict[str, set[str]] = {}
    typed_suffix = f".{QTYPE_LABEL}"
    for line in out:
        owner, _, records = line.partition(" ")
        if owner.rsplit(".", 1)[-1] in _TRIGGER_LABELS:
            continue
        if owner.endswith(typed_suffix):  # records kept with the label: "TYPED TXT ..."
            owner, records = owner[: -len(typed_suffix)], f"{_TYPED} {records}"
        if owner.startswith("*."):
            wild.setdefault(owner[2:], set()).add(records)
        else:
            exact.setdefault(owner, set()).add(records)
    if not wild:
        return out

    def covering(name: str, wild: dict[str, set[str]]) -> set[str] | None:
        """The records of the closest wildcard strictly above *name* (the list's meaning)."""
        i = name.find(".")
        while i >= 0:
            found = wild.get(name[i + 1 :])
            if found is not None:
                return found
            i = name.find(".", i + 1)
        return None

    # Covered: the records of the closest wildcard above, the same (decided on the
    # whole list: a chain of equal wildcards goes down to its top one).
    kept_exact = {n: r for n, r in exact.items() if covering(n, wild) != r}
    kept_wild = {n: r for n, r in wild.items() if covering(n, wild) != r}
    for index, kept, star in ((exact, kept_exact, ""), (wild, kept_wild, "*.")):
        for name in index.keys() - kept.keys():
            out.difference_update(_line(f"{star}{name}", r) for r in index[name])
    existing: set[str] = set()
    for owner in chain(kept_exact, kept_wild):  # an owner ("*.name": name), the names above
        name = owner
        while name not in existing:
            existing.add(name)
            i = name.find(".")
            if i < 0:
                break
            name = name[i + 1 :]
    for name in existing:
        found = covering(name, kept_wild)
        if found is None:
            continue
        if name not in kept_exact:
            out.update(_line(name, r) for r in found)
        if name not in kept_wild:
            out.update(_line(f"*.{name}", r) for r in found)
    return out


_TYPED = "\x00typed"  # marks records of a mamori-qtype owner inside cover_closest_enclosers


def _line(owner: str, records: str) -> str:
    """A zone line for *owner* (relative) with *records* as cover_closest_enclosers
    keeps them (typed records go back under the ``mamori-qtype`` label)."""
    if records.startswith(_TYPED):
        return f"{owner}.{QTYPE_LABEL} {records[len(_TYPED) + 1 :]}"
    return f"{owner} {records}"
