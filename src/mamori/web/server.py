"""Serving the ASGI app with uvicorn, in `mamori web` or inside `mamori serve`'s loop."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Generator
from typing import Any

import uvicorn

from mamori import config as cfgmod
from mamori.web.app import create_app

log = logging.getLogger(__name__)


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the signals to its host (mamori serve's loop)."""

    embedded = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self.embedded:
            with super().capture_signals():
                yield
            return
        yield


def make_server(cfg: cfgmod.Config, embedded: bool = False, runtime: Any = None) -> EmbeddedServer:
    listen = cfg.web.listen
    config = uvicorn.Config(
        create_app(cfg, runtime),
        host=listen.host,
        port=listen.port,
        log_level=cfg.log.level if cfg.log.level != "debug" else "info",
        access_log=False,
        lifespan="off",
        loop="none",
    )
    server = EmbeddedServer(config)
    server.embedded = embedded
    return server
