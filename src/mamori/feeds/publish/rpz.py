"""A feed's entries as an RPZ zone file (the policy zone the firewall applies).

Names become QNAME rules (``name CNAME .``, wildcards ``*.name``), addresses
and networks Response-IP rules (``rpz-ip``), allow rules ``rpz-passthru``.
The serial is the previous one plus one (RFC 1982 addition: 4294967295 is
followed by 0, which secondaries take as newer), and only when the content
changed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from mamori.dnsutil import serial as rfc1982
from mamori.feeds.normalize import Entry


def ip_owner(value: str) -> str:
    """``192.0.2.0/24`` -> ``24.0.2.0.192.rpz-ip`` (IPv6: ``zz`` for the longest zero run)."""
    net = ipaddress.ip_network(
        value if "/" in value else f"{value}/{32 if ':' not in value else 128}"
    )
    if net.version == 4:
        return (
            f"{net.prefixlen}."
            + ".".join(reversed(str(net.network_address).split(".")))
            + ".rpz-ip"
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
    return f"{net.prefixlen}." + ".".join(reversed(words)) + ".rpz-ip"


def rules(entries: Iterable[Entry], exceptions: Iterable[Entry], target: str) -> list[str]:
    """Sorted, de-duplicated rule lines (owner relative to the zone)."""
    out: set[str] = set()
    for e, rdata in [(x, target) for x in entries] + [(x, "rpz-passthru.") for x in exceptions]:
        if e.kind == "domain":
            out.add(f"{e.value} CNAME {rdata}")
        elif e.kind == "wildcard":
            out.add(f"*.{e.value} CNAME {rdata}")
        else:
            out.add(f"{ip_owner(e.value)} CNAME {rdata}")
    return sorted(out)


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
