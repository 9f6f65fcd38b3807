"""Client groups: which ``[[group]]``s a client address belongs to.

A group lists IP prefixes; a client is in every group one of whose prefixes
contains its address (IPv4-mapped IPv6 addresses count as IPv4). The data
plane asks once per client record (resolver/acl.py), the control plane when it
explains a decision for a client. A device named over encrypted DNS (DoH path,
DoT/DoQ server name, EDNS client MAC) is also in every group that lists it in
``client_ids``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class GroupClassifier:
    """The groups of a client address, from (group name, prefixes) pairs in configured order."""

    def __init__(
        self,
        groups: Iterable[tuple[str, Sequence[str]]],
        devices: Iterable[tuple[str, Sequence[str]]] = (),
    ) -> None:
        """*groups*: (name, IP prefixes); *devices*: (name, device names), same order."""
        self.groups: list[tuple[str, list[Network]]] = [
            (name, [ipaddress.ip_network(c, strict=False) for c in clients])
            for name, clients in groups
        ]
        self.devices: dict[str, frozenset[str]] = {
            name: frozenset(d.lower() for d in ids) for name, ids in devices if ids
        }

    def __bool__(self) -> bool:
        return bool(self.groups) or bool(self.devices)

    def groups_of(self, client: str, device: str = "") -> tuple[str, ...]:
        """The names of the groups *client* (an address, text) or *device* (a device
        name, lowercase) is in, in configured order."""
        if not self.groups:
            return ()
        try:
            addr = ipaddress.ip_address(client.split("%", maxsplit=1)[0])
        except ValueError:
            addr = None
        if addr is not None and addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        devices = self.devices
        return tuple(
            name
            for name, nets in self.groups
            if (device and device in devices.get(name, ()))
            or (addr is not None and any(addr.version == n.version and addr in n for n in nets))
        )


def group_label(groups: Iterable[str], device: str = "") -> str:
    """Group names as the query log shows them: comma-joined ("" for none); with a
    *device* name, ``"GROUPS@DEVICE"`` (``split_label`` takes it apart)."""
    label = ",".join(groups)
    return f"{label}@{device}" if device else label


def split_label(label: str) -> tuple[str, str]:
    """``group_label``'s text -> (comma-joined groups, device name or "")."""
    groups, _, device = label.partition("@")
    return groups, device
