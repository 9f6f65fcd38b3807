"""The ASGI application: the console pages, the passive DNS APIs and /metrics."""

from __future__ import annotations

import logging
import os
import secrets
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
from mamori.discovery.geo import GeoHolder, geo_of
from mamori.store.ch_conn import ChUnavailable
from mamori.store.pdns_open import open_pdns
from mamori.web import metrics
from mamori.web.api import Api
from mamori.web.audit_page import AuditPage
from mamori.web.brand_api import BrandApi, BrandWatchData
from mamori.web.brand_page import BrandPage
from mamori.web.console import Console, static_dir
from mamori.web.geo_page import GeoPage
from mamori.web.keys import KeyStore
from mamori.web.openapi import SPEC
from mamori.web.pdns_api import PdnsApi
from mamori.web.preview_api import PreviewApi, PreviewPage, Previews
from mamori.web.rules_page import RulesPage
from mamori.web.settings_api import Settings, SettingsApi
from mamori.web.settings_pages import SettingsPages
from mamori.web.stats_api import StatsApi

log = logging.getLogger(__name__)


def keys_path(cfg: cfgmod.Config) -> Path:
    return cfg.store.path.parent / "keys.sqlite"


def first_admin(cfg: cfgmod.Config, keys: KeyStore) -> None:
    """No console user yet: make ``admin`` with a random password, say it once in the log
    (and in ``<store dir>/initial-admin-password``, mode 0600), as Pi-hole does at install."""
    if keys.users():
        return
    password = secrets.token_urlsafe(12)
    keys.add_user("admin", password)
    path = cfg.store.path.parent / "initial-admin-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    log.warning(
        "console: no user yet; created user admin with password %s (also in %s);"
        " change it with: mamori users add admin --config %s",
        password,
        path,
        cfg.path,
    )


def settings_routes(console: Console, keys: KeyStore, settings: Settings, rest: Api) -> list[Any]:
    """Feeds, groups and brands edited from the console and the REST API (settings_api.py,
    brand_api.py), and the feeds' impact preview (preview_api.py)."""
    brands = BrandWatchData(settings)
    previews = Previews(settings)
    return [
        *SettingsApi(settings, keys).routes(),
        *SettingsPages(console, settings).routes(),
        *BrandApi(settings, keys, brands).routes(),
        *BrandPage(console, rest, settings, brands).routes(),
        *PreviewApi(previews, keys).routes(),
        *PreviewPage(console, previews).routes(),
    ]


def create_app(cfg: cfgmod.Config, runtime: Any = None) -> Starlette:
    """*runtime*: the running DNS service's parts (mamori serve), for /metrics."""
    store = open_pdns(cfg, writer=False)  # lookups; the tap (serve) writes
    keys = KeyStore(keys_path(cfg))
    holder = GeoHolder()
    api = PdnsApi(store, keys, lambda: geo_of(holder, console.current_cfg()), lambda: holder.broken)
    reg = metrics.registry(cfg, runtime)

    async def openapi(_request: Request) -> Response:
        return JSONResponse(SPEC)

    async def scrape(request: Request) -> Response:
        client = request.client.host if request.client else None
        authorization = request.headers.get("authorization")
        if not metrics.allowed(cfg, client, authorization):
            if authorization and cfg.web.metrics_token:  # a wrong token: counted, throttled
                return PlainTextResponse(
                    "wrong token\n", 401, headers={"WWW-Authenticate": "Bearer"}
                )
            return PlainTextResponse("forbidden\n", 403)
        body = await run_in_threadpool(generate_latest, reg)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    console = Console(cfg, keys, store, runtime)
    console.geo = lambda: geo_of(holder, console.current_cfg())
    reg.register(console.guard.collector())
    rest = Api(cfg, keys, runtime)
    first_admin(cfg, keys)
    app = Starlette(
        routes=[
            Route("/openapi.json", openapi),
            Route("/metrics", scrape),
            Mount("/static", StaticFiles(directory=static_dir()), name="static"),
            *api.routes(),
            *StatsApi(console.data, keys, runtime).routes(),
            *AuditPage(cfg, console).routes(),
            *console.routes(),
            *GeoPage(console, store, console.geo).routes(),
            *rest.routes(),
            *RulesPage(console, rest).routes(),
            *settings_routes(console, keys, Settings(cfg, runtime), rest),
        ],
        middleware=console.middleware(),
        exception_handlers={ChUnavailable: _unavailable},
    )
    app.state.pdns = store
    app.state.keys = keys
    return app


async def _unavailable(request: Request, exc: Exception) -> Response:
    """A ClickHouse store that does not answer (down, slow): 503, one line, retry later."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": "10", "Cache-Control": "no-store"}
    if request.url.path.startswith("/api/") or "json" in request.headers.get("accept", ""):
        return JSONResponse({"error": str(exc)}, 503, headers=headers)
    return PlainTextResponse(f"the store does not answer: {exc}\n", 503, headers=headers)
