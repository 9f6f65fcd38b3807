"""Client groups: which ``[[group]]``s a client address belongs to.

A group lists IP prefixes; a client is in every group one of whose prefixes
contains its address (IPv4-mapped IPv6 addresses count as IPv4). The data
plane asks once per client record (resolver/acl.py), the control plane when it
explains a decision for a client. Device names (``client_ids``, encrypted DNS)
are not looked at here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class GroupClassifier:
    """The groups of a client address, from (group name, prefixes) pairs in configured order."""

    def __init__(self, groups: Iterable[tuple[str, Sequence[str]]]) -> None:
        self.groups: list[tuple[str, list[Network]]] = [
            (name, [ipaddress.ip_network(c, strict=False) for c in clients])
            for name, clients in groups
        ]

    def __bool__(self) -> bool:
        return bool(self.groups)

    def groups_of(self, client: str) -> tuple[str, ...]:
        """The names of the groups *client* (an address, text) is in, in configured order."""
        if not self.groups:
            return ()
        try:
            addr = ipaddress.ip_address(client.split("%", maxsplit=1)[0])
        except ValueError:
            return ()
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return tuple(
            name
            for name, nets in self.groups
            if any(addr.version == n.version and addr in n for n in nets)
        )


def group_label(groups: Iterable[str]) -> str:
    """Group names as the query log shows them: comma-joined ("" for none)."""
    return ",".join(groups)
