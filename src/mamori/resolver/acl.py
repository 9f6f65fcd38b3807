"""Access control (allowed client prefixes) and per-client token-bucket rate limiting.

Both decisions share one memoised record per client address, so the hot path
does a single dict probe per query. The memo is bounded; when it grows past
MAX_CLIENTS it is cleared (rate-limit state restarts full for everyone).
"""

from __future__ import annotations

import ipaddress

MAX_CLIENTS = 200_000


class ClientState:
    __slots__ = ("allowed", "last", "tokens")

    def __init__(self, allowed: bool, tokens: float, last: float) -> None:
        self.allowed = allowed
        self.tokens = tokens
        self.last = last


class ClientTable:
    def __init__(self, allow: tuple[str, ...], burst: float) -> None:
        nets = [ipaddress.ip_network(a) for a in allow]
        self.v4 = [n for n in nets if n.version == 4]
        self.v6 = [n for n in nets if n.version == 6]
        self.burst = burst
        self.clients: dict[str, ClientState] = {}

    def is_allowed(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", maxsplit=1)[0])
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        nets = self.v4 if addr.version == 4 else self.v6
        return any(addr in n for n in nets)

    def lookup(self, ip: str, now: float) -> ClientState:
        """Slow path of the memo: classify a client seen for the first time."""
        if len(self.clients) >= MAX_CLIENTS:
            self.clients.clear()
        st = ClientState(self.is_allowed(ip), self.burst, now)
        self.clients[ip] = st
        return st
