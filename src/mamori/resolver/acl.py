"""Access control (allowed client prefixes) and per-client token-bucket rate limiting.

Both decisions share one memoised record per client address, so the hot path
does a single dict probe per query. The record also keeps the client's policy
slot (active_policy.py): its ``[[group]]``s, decided once, select the view of
the policy it gets. The memo is bounded; when it grows past
MAX_CLIENTS it is cleared (rate-limit state restarts full for everyone).
"""

from __future__ import annotations

import ipaddress

from mamori.policy.groups import GroupClassifier
from mamori.resolver.active_policy import PolicySlot, PolicySlots

MAX_CLIENTS = 200_000


class ClientState:
    __slots__ = ("allowed", "last", "mac_trusted", "slot", "tokens")

    def __init__(
        self, allowed: bool, tokens: float, last: float, slot: PolicySlot, mac_trusted: bool = False
    ) -> None:
        self.allowed = allowed
        self.tokens = tokens
        self.last = last
        self.slot = slot  # the policy (view) for the client's groups
        # in [server] trust_client_mac: its EDNS client-MAC option names the device
        self.mac_trusted = mac_trusted


class ClientTable:
    def __init__(
        self,
        allow: tuple[str, ...],
        burst: float,
        slots: PolicySlots | None = None,
        groups: GroupClassifier | None = None,
        trust_mac: tuple[str, ...] = (),
    ) -> None:
        """*slots*: the policy slot per set of groups; *groups*: who is in which group;
        *trust_mac*: prefixes of the forwarders whose EDNS client-MAC option is believed."""
        self.slots = slots if slots is not None else PolicySlots()
        self.groups = groups if groups else None
        nets = [ipaddress.ip_network(a) for a in allow]
        self.v4 = [n for n in nets if n.version == 4]
        self.v6 = [n for n in nets if n.version == 6]
        self.trust_mac = [ipaddress.ip_network(a, strict=False) for a in trust_mac]
        self.burst = burst
        self.clients: dict[str, ClientState] = {}
        self.devices: dict[tuple[str, str], ClientState] = {}  # (address, device name)

    def is_allowed(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", maxsplit=1)[0])
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        nets = self.v4 if addr.version == 4 else self.v6
        return any(addr in n for n in nets)

    def is_mac_trusted(self, ip: str) -> bool:
        """Whether *ip* is in ``[server] trust_client_mac`` (False when it is empty)."""
        if not self.trust_mac:
            return False
        try:
            addr = ipaddress.ip_address(ip.split("%", maxsplit=1)[0])
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == n.version and addr in n for n in self.trust_mac)

    def lookup(self, ip: str, now: float) -> ClientState:
        """Slow path of the memo: classify a client seen for the first time."""
        if len(self.clients) >= MAX_CLIENTS:
            self.clients.clear()
        slot = self.slots.default
        if self.groups is not None:
            slot = self.slots.slot(self.groups.groups_of(ip))
        st = ClientState(self.is_allowed(ip), self.burst, now, slot, self.is_mac_trusted(ip))
        self.clients[ip] = st
        return st

    def device(self, ip: str, device: str, now: float) -> ClientState:
        """The record of a device named over encrypted DNS (*device*: a checked, lowercase
        name) at address *ip*: allowed by its address, in the groups of its address and
        of its name, logged with its name. Memoised per (address, name), bounded."""
        st = self.devices.get((ip, device))
        if st is None:
            if len(self.devices) >= MAX_CLIENTS:
                self.devices.clear()
            groups = self.groups.groups_of(ip, device) if self.groups is not None else ()
            slot = self.slots.slot(groups, device)
            st = ClientState(self.is_allowed(ip), self.burst, now, slot)
            self.devices[(ip, device)] = st
        return st
