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
from mamori.web.app import create_app
from mamori.web.listen import bind_http, blockpage_endpoints

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


def make_server(
    cfg: cfgmod.Config,
    embedded: bool = False,
    runtime: Any = None,
    sock: socket.socket | None = None,
) -> EmbeddedServer:
    """The APIs (and /metrics) on [web] listen (*sock*: already bound there)."""
    return _server(create_app(cfg, runtime), cfg.web.listen, cfg, embedded, sock)


def blockpage_servers(
    cfg: cfgmod.Config, runtime: Any = None, socks: list[socket.socket] | None = None
) -> list[EmbeddedServer]:
    """One server per [blockpage] listen address (default: the block address, port 80);
    *socks*: already bound there, in that order."""
    from mamori.web.blockpage import BlockPage

    app = BlockPage(cfg, runtime).app()
    bp = cfg.blockpage
    listen = blockpage_endpoints(bp.address, bp.listen)
    bound: list[socket.socket | None] = list(socks) if socks else [None] * len(listen)
    return [_server(app, ep, cfg, True, s) for ep, s in zip(listen, bound, strict=True)]


def _server(
    app: Any, listen: Endpoint, cfg: cfgmod.Config, embedded: bool, sock: socket.socket | None
) -> EmbeddedServer:
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
    server.bound = [sock if sock is not None else bind_http(listen)]
    return server
