"""``[store] client_addresses``: what is kept of a client's address in what mamori writes.

Applied where an address leaves memory for a file or for someone else: the
query log and the policy-hit log lines (control/writer.py), the alert history
and the alert messages (alerts/engine.py), the block page's false-positive
reports (web/blockpage.py). Rate limits, ACLs and groups keep using the full
address, in memory only.

- ``full``: the address as received;
- ``truncate``: the network address of its /24 (IPv4) or /48 (IPv6), e.g.
  ``192.0.2.0`` and ``2001:db8:1::``; an IPv4-mapped IPv6 address as IPv4;
- ``none``: ``NO_ADDRESS`` (``"-"``) in place of every address.

Text that is not an address (none expected) is written as ``NO_ADDRESS``
unless the mode is ``full``: a mode that promises less never leaks more.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

MODES = ("full", "truncate", "none")
NO_ADDRESS = "-"
V4_PREFIX = 24
V6_PREFIX = 48
_MEMO_MAX = 65_536


def truncate(address: str) -> str:
    """The network address of *address*'s /24 (IPv4) or /48 (IPv6); ``NO_ADDRESS``
    for text that is not an address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return NO_ADDRESS
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = V4_PREFIX if ip.version == 4 else V6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def masker(mode: str) -> Callable[[str], str]:
    """A function turning a client address into what *mode* keeps of it (memoised:
    the writer calls it once per query, and clients repeat)."""
    if mode == "full":
        return _same
    if mode == "none":
        return _nothing
    if mode != "truncate":
        raise ValueError(f"client_addresses: {mode!r} is not one of {', '.join(MODES)}")
    memo: dict[str, str] = {}

    def cut(address: str) -> str:
        out = memo.get(address)
        if out is None:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            out = memo[address] = truncate(address)
        return out

    return cut


def _same(address: str) -> str:
    return address


def _nothing(_address: str) -> str:
    return NO_ADDRESS
