"""HTTP listening sockets, bound before anything starts (no web framework imported here).

``mamori serve`` binds the console's and the block page's addresses first,
so a taken port is a clear error at once, and builds the web apps only after
the DNS side answers (their imports take a fifth of a second).
"""

from __future__ import annotations

import socket

from mamori.config.values import Endpoint
from mamori.errors import StartupError


def bind_http(listen: Endpoint) -> socket.socket:
    """A listening TCP socket on *listen*; StartupError naming it when that fails."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise StartupError(f"HTTP listener {listen}: {e.strerror}") from e
    sock.set_inheritable(True)
    return sock


def blockpage_endpoints(address: str, listen: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    """Where the block page listens: ``[blockpage] listen``, else the block address, port 80."""
    return listen or (Endpoint(address, 80),)
