"""Serving the ASGI app with uvicorn, in `mamori web` or inside `mamori serve`'s loop."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from mamori import config as cfgmod
from mamori.config.values import Endpoint
from mamori.errors import StartupError
from mamori.web.app import create_app

log = logging.getLogger(__name__)


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the signals to its host (mamori serve's loop), on a
    socket bound when it is made (a taken port fails before the DNS side starts)."""

    embedded = False
    bound: list[socket.socket] = []

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets=sockets or self.bound or None)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self.embedded:
            with super().capture_signals():
                yield
            return
        yield


def make_server(cfg: cfgmod.Config, embedded: bool = False, runtime: Any = None) -> EmbeddedServer:
    """The APIs (and /metrics) on [web] listen."""
    return _server(create_app(cfg, runtime), cfg.web.listen, cfg, embedded)


def blockpage_servers(cfg: cfgmod.Config, runtime: Any = None) -> list[EmbeddedServer]:
    """One server per [blockpage] listen address (default: the block address, port 80)."""
    from mamori.web.blockpage import BlockPage

    app = BlockPage(cfg, runtime).app()
    bp = cfg.blockpage
    listen = bp.listen or (Endpoint(bp.address, 80),)
    return [_server(app, ep, cfg, True) for ep in listen]


def _server(app: Any, listen: Endpoint, cfg: cfgmod.Config, embedded: bool) -> EmbeddedServer:
    config = uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        log_level=cfg.log.level if cfg.log.level != "debug" else "info",
        access_log=False,
        lifespan="off",
        loop="none",
    )
    server = EmbeddedServer(config)
    server.embedded = embedded
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
    server.bound = [sock]
    return server
