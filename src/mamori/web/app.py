"""The ASGI application: passive DNS APIs (console pages join later)."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mamori import config as cfgmod
from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.web.keys import KeyStore
from mamori.web.openapi import SPEC
from mamori.web.pdns_api import PdnsApi


def keys_path(cfg: cfgmod.Config) -> Path:
    return cfg.store.path.parent / "keys.sqlite"


def create_app(cfg: cfgmod.Config) -> Starlette:
    store = PdnsSQLite(cfgmod.pdns_path(cfg))
    keys = KeyStore(keys_path(cfg))
    api = PdnsApi(store, keys)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(SPEC)

    app = Starlette(routes=[Route("/openapi.json", openapi), *api.routes()])
    app.state.pdns = store
    app.state.keys = keys
    return app
