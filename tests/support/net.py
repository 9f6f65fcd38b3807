"""Loopback port helpers for tests (traffic stays on 127.0.0.1 / ::1)."""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

LOWEST = 10_000  # ports below: well-known services


def _ephemeral_low() -> int:
    """The first port of Linux's ephemeral range (clients' source ports)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on *host*, and on ::1 too when *host* is
    127.0.0.1 (services under test often listen on both loopbacks).

    Taken below the ephemeral range: a client polling such a port before its server
    listens can never be given it as its own source port (a TCP connection to
    itself, reading its own request back), nor can an outgoing connection take it
    before the server binds it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = _ephemeral_low() - 1
    kinds = [(family, socket.SOCK_DGRAM, host), (family, socket.SOCK_STREAM, host)]
    if host == "127.0.0.1":
        kinds += [
            (socket.AF_INET6, kind, "::1") for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)
        ]
    for _ in range(200):
        port = random.randint(LOWEST, high) if high > LOWEST else 0
        if port == 0:  # an odd range setting: let the kernel choose
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                u.bind((host, 0))
                port = int(u.getsockname()[1])
        if all(_free(fam, kind, addr, port) for fam, kind, addr in kinds):
            return port
    raise RuntimeError("no free port")


def _free(family: int, kind: int, host: str, port: int) -> bool:
    try:
        with socket.socket(family, kind) as s:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, port))
    except OSError as e:
        return e.errno == errno.EADDRNOTAVAIL  # no IPv6 loopback: nothing to collide with
    return True
