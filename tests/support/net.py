"""Loopback port helpers for tests (traffic stays on 127.0.0.1 / ::1)."""

from __future__ import annotations

import errno
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on *host*, and on ::1 too when *host* is
    127.0.0.1 (services under test often listen on both loopbacks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            others = [(family, socket.SOCK_STREAM, host)]
            if host == "127.0.0.1":
                others += [
                    (socket.AF_INET6, kind, "::1")
                    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)
                ]
            if all(_free(fam, kind, addr, port) for fam, kind, addr in others):
                return int(port)
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
