"""What a DNSBL zone lists: IP addresses and networks, or names, each with categories.

Loaded from the ``.entries`` files ``mamori feeds update`` writes (one per
feed: kind, value; the feed's category in the header), and reloaded when
they change. IP lookups take the longest listed prefix; name lookups the name
itself, or a listed ``*.`` parent.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

# Return codes per category (Spamhaus-style: 127.0.0.x for IP lists, 127.0.1.x for names)
IP_CODES = {
    "spam": "127.0.0.2",
    "botnet-cc": "127.0.0.4",
    "malware": "127.0.0.5",
    "phishing": "127.0.0.6",
    "cryptominer": "127.0.0.7",
    "adware": "127.0.0.8",
    "custom": "127.0.0.9",
}
NAME_CODES = {
    "spam": "127.0.1.2",
    "phishing": "127.0.1.4",
    "malware": "127.0.1.5",
    "botnet-cc": "127.0.1.6",
    "cryptominer": "127.0.1.7",
    "adware": "127.0.1.8",
    "custom": "127.0.1.9",
}
# Newly observed domains ([nod] dnsbl_zone, Spamhaus ZRD's idea): category "nod-N" is a
# name first seen less than N hours ago (N from 2: the first two hours share 127.0.2.2)
NOD_CODES = {f"nod-{h}": f"127.0.2.{h}" for h in range(2, 255)}
WRONG_QUERY = "127.255.255.252"  # a name asked of an IP list, or an address of a name list


@dataclass
class Listing:
    categories: set[str] = field(default_factory=set)
    feeds: set[str] = field(default_factory=set)


@dataclass
class Data:
    # (IP version, prefix length) -> {(version, network as int): listing}
    nets: dict[tuple[int, int], dict[tuple[int, int], Listing]] = field(default_factory=dict)
    names: dict[str, Listing] = field(default_factory=dict)
    wild: dict[str, Listing] = field(default_factory=dict)
    signature: tuple[tuple[str, int, int], ...] = ()
    # per IP version: the (version, prefix length) keys of nets, longest first
    order: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    def ip(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Listing | None:
        return self.ip_int(addr.version, int(addr))

    def ip_int(self, version: int, value: int) -> Listing | None:
        """The listing covering an address (given as an integer), longest prefix first."""
        bits = 32 if version == 4 else 128
        for key in self.order.get(version, ()):
            plen = key[1]
            net = value & (((1 << plen) - 1) << (bits - plen)) if plen else 0
            hit = self.nets[key].get((version, net))
            if hit is not None:
                return hit
        return None

    def name(self, qname: str) -> Listing | None:
        hit = self.names.get(qname)
        if hit is not None:
            return hit
        labels = qname.split(".")
        for i in range(1, len(labels)):
            hit = self.wild.get(".".join(labels[i:]))
            if hit is not None:
                return hit
        return None


def signature(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(p), 0, 0))
    return tuple(out)


def load(paths: list[Path]) -> Data:
    data = Data(signature=signature(paths))
    for path in paths:
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        head = lines[0].split() if lines else []
        feed = head[2] if len(head) > 4 else path.stem
        category = head[4] if len(head) > 4 else "custom"
        for line in lines[1:]:
            # kind TAB value [TAB category of this entry: the header's when absent]
            kind, _, value = line.partition("\t")
            value, _, own = value.partition("\t")
            if kind in ("ip", "cidr"):
                net = ipaddress.ip_network(value, strict=False)
                key = (net.version, net.prefixlen)
                slot = data.nets.setdefault(key, {})
                listing = slot.setdefault((net.version, int(net.network_address)), Listing())
            elif kind == "domain":
                listing = data.names.setdefault(value, Listing())
            elif kind == "wildcard":
                listing = data.wild.setdefault(value, Listing())
            else:
                continue
            listing.categories.add(own or category)
            listing.feeds.add(feed)
    for version in (4, 6):
        data.order[version] = sorted((k for k in data.nets if k[0] == version), reverse=True)
    return data
