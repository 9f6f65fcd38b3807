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
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

import dns.rdatatype

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
        return sorted(out)
    rdata = {BLOCK: target, ALLOW: "rpz-passthru.", NONE: "-"}
    verdicts = precedence.resolve(entries, exceptions)
    return sorted(line for v in verdicts for line in lines(v, rdata))


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
    """Write the zone if its rules changed; (serial, changed)."""
    old_serial, old_rules = _read(path)
    if old_rules == lines:
        return old_serial, False
    serial = rfc1982.add(old_serial, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(f"; compiled by mamori from feed data\n$ORIGIN {origin}\n$TTL {ttl}\n")
        f.write(f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 60\n")
        f.write("@ NS localhost.\n")
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return serial, True


def _read(path: Path) -> tuple[int, list[str] | None]:
    if not path.exists():
        return 0, None
    serial, out = 0, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("@ SOA"):
            serial = int(line.split()[4])
        elif line and not line.startswith((";", "$", "@")):
            out.append(line)
    return serial, out
