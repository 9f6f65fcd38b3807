"""The ASGI application: passive DNS APIs (console pages join later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mamori import config as cfgmod
from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.web import metrics
from mamori.web.console import Console, static_dir
from mamori.web.keys import KeyStore
from mamori.web.openapi import SPEC
from mamori.web.pdns_api import PdnsApi


def keys_path(cfg: cfgmod.Config) -> Path:
    return cfg.store.path.parent / "keys.sqlite"


def create_app(cfg: cfgmod.Config, runtime: Any = None) -> Starlette:
    """*runtime*: the running DNS service's parts (mamori serve), for /metrics."""
    store = PdnsSQLite(cfgmod.pdns_path(cfg))
    keys = KeyStore(keys_path(cfg))
    api = PdnsApi(store, keys)
    reg = metrics.registry(cfg, runtime)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(SPEC)

    async def scrape(request: Request) -> Response:
        client = request.client.host if request.client else None
        if not metrics.allowed(cfg, client, request.headers.get("authorization")):
            return PlainTextResponse("forbidden\n", 403)
        body = await run_in_threadpool(generate_latest, reg)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    console = Console(cfg, keys, store, runtime)
    app = Starlette(
        routes=[
            Route("/openapi.json", openapi),
            Route("/metrics", scrape),
            Mount("/static", StaticFiles(directory=static_dir()), name="static"),
            *api.routes(),
            *console.routes(),
        ],
        middleware=console.middleware(),
    )
    app.state.pdns = store
    app.state.keys = keys
    return app
