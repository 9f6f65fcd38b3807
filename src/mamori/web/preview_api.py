"""Feed impact preview from the console and the REST API
(``GET /api/v1/feeds/{name}/preview``, the Feeds page's "Preview" button): the same
replay and numbers as ``mamori feeds preview NAME`` (discovery/preview.py).

In ``mamori serve`` the zones in force are the running policy version's (the
control plane's own mapping); ``mamori web`` alone compiles them as the CLI does.
One preview runs at a time (each scans the query log); others wait for it.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mamori import config as cfgmod
from mamori.control.inforce import zones_in_force
from mamori.discovery import candidate as cand
from mamori.discovery.preview import (
    Candidate,
    Options,
    PreviewError,
    QueryLog,
    ZoneSpec,
    run_preview,
)
from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.store.querylog_open import log_source
from mamori.web.apiauth import ApiError, authorize
from mamori.web.console import Console
from mamori.web.i18n import N_
from mamori.web.keys import KeyStore
from mamori.web.settings_api import Settings

NOT_PREVIEWED = N_("No preview of %(name)s: %(error)s")

MAX_DAYS = 3660


def parameters(query: Any) -> tuple[float, int]:
    """(days, top) of a request's query string; ApiError 422 naming the parameter."""
    days_text = query.get("days", "7")
    try:
        days = float(days_text)
    except ValueError:
        raise ApiError(422, f"days must be a number, got {days_text!r}", "days") from None
    if not math.isfinite(days) or not 0 <= days <= MAX_DAYS:
        raise ApiError(422, f"days must be between 0 and {MAX_DAYS}", "days")
    top_text = query.get("top", "10")
    if not top_text.isdigit() or not 1 <= int(top_text) <= 1000:
        raise ApiError(422, "top must be an integer from 1 to 1000", "top")
    return days, int(top_text)


class Previews:
    """Runs previews of configured feeds, datasets and zones (blocking: in a thread)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._one = threading.Lock()

    def run(self, name: str, days: float, top: int) -> dict[str, Any]:
        """The report of *name* as JSON (``Report.to_json``); ApiError 404 for a name
        that is no feed, dataset or policy zone, 409 for one that cannot be previewed
        (not fetched yet and unreachable, no query log yet)."""
        cfg = self.s.cfg
        known = {f.name for f in cfg.feeds} | {d.name for d in cfg.datasets}
        if name not in known and name.rstrip(".").lower() + "." not in {z.name for z in cfg.rpz}:
            raise ApiError(404, f"no feed, dataset or policy zone named {name}")
        with self._one:
            try:
                return self._run(cfg, name, days, top)
            except PreviewError as e:
                raise ApiError(409, str(e)) from None

    def _run(self, cfg: cfgmod.Config, name: str, days: float, top: int) -> dict[str, Any]:
        policy = self.s.runtime.policy if self.s.runtime is not None else None
        in_force: list[ZoneSpec] = (
            list(zip(policy.zones, policy.settings, strict=True))
            if policy is not None
            else zones_in_force(cfg)
        )

        def build() -> Candidate:
            return cand.from_config(cfg, name)

        def place(c: Candidate) -> tuple[list[ZoneSpec], list[ZoneSpec]]:
            return cand.place(cfg, c.settings.name, in_force)

        log = QueryLog(log_source(cfg))
        pdns_file = cfgmod.pdns_path(cfg)
        pdns = PdnsSQLite(pdns_file, readonly=True) if pdns_file.exists() else None
        try:
            return run_preview(build, place, log, pdns, Options(days=days, top=top)).to_json()
        finally:
            log.close()
            if pdns is not None:
                pdns.close()


class PreviewApi:
    """``GET /api/v1/feeds/{name}/preview`` (API key with read scope, or console session)."""

    def __init__(self, previews: Previews, keys: KeyStore) -> None:
        self.previews = previews
        self.keys = keys

    def routes(self) -> list[Route]:
        return [Route("/api/v1/feeds/{name}/preview", self.preview, methods=["GET"])]

    async def preview(self, request: Request) -> Response:
        try:
            await authorize(request, self.keys)
            days, top = parameters(request.query_params)
            name = request.path_params["name"]
            return JSONResponse(await run_in_threadpool(self.previews.run, name, days, top))
        except ApiError as e:
            return e.response()


class PreviewPage:
    """The console's preview of one feed (``/feeds/{name}/preview?days=N``): the numbers
    ``mamori feeds preview`` prints, as a page (the Feeds page's "Preview" button)."""

    def __init__(self, console: Console, previews: Previews) -> None:
        self.console = console
        self.previews = previews

    def routes(self) -> list[Route]:
        return [Route("/feeds/{name}/preview", self.page, methods=["GET"])]

    async def page(self, request: Request) -> Response:
        if not self.console.session_user(request):
            return self.console.login_redirect(request)
        name = request.path_params["name"]
        report: dict[str, Any] | None = None
        error = ""
        status = 200
        try:
            days, top = parameters(request.query_params)
            report = await run_in_threadpool(self.previews.run, name, days, top)
        except ApiError as e:
            error = self.console.translate(request, NOT_PREVIEWED, name=name, error=str(e))
            status, days = e.status, 7.0
        resp = self.console.render_page(
            request, "preview.html", N_("Feed preview"), name=name, r=report, error=error,
            days=days,
        )  # fmt: skip
        resp.status_code = status
        return resp


_COUNTS = {"type": "integer", "minimum": 0}
_REPORT = {
    "type": "object",
    "required": ["candidate", "zone", "queries", "blocked", "top_names", "warnings"],
    "properties": {
        "candidate": {"type": "string"},
        "kind": {"type": "string", "enum": ["feed", "dataset", "rpz", "file"]},
        "zone": {"type": "string", "description": "its policy zone"},
        "rules": _COUNTS,
        "days": {"type": "number"},
        "since": {"type": "number", "description": "UNIX time, the window's start"},
        "until": {"type": "number"},
        "queries": {**_COUNTS, "description": "queries logged in the window"},
        "clients_seen": _COUNTS,
        "blocked": {
            "type": "object",
            "description": "what it would block (an earlier zone's decisions not counted)",
            "properties": {"queries": _COUNTS, "names": _COUNTS, "clients": _COUNTS},
        },
        "top_names": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "queries": _COUNTS,
                    "clients": _COUNTS,
                },
            },
        },
        "top_clients": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"client": {"type": "string"}, "queries": _COUNTS},
            },
        },
        "earlier_zones": {"type": "array", "items": {"type": "string"}},
        "already_blocked": {**_COUNTS, "description": "matched, but blocked by an earlier zone"},
        "already_blocked_by": {"type": "object", "additionalProperties": _COUNTS},
        "allowed_earlier": {**_COUNTS, "description": "matched, but an earlier PASSTHRU wins"},
        "warnings": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "queries": _COUNTS,
                    "clients": _COUNTS,
                    "reasons": {
                        "type": "array",
                        "items": {"enum": ["popular", "long-history", "allowlisted"]},
                    },
                    "detail": {"type": "string"},
                    "first_seen": {"type": "integer", "nullable": True},
                },
            },
        },
        "warnings_total": _COUNTS,
        "not_replayed": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "array", "items": {"type": "string"}},
        "seconds": {"type": "number"},
    },
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
}


def _error(why: str) -> dict[str, Any]:
    return {"description": why, "content": {"application/json": {"schema": _ERROR}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/feeds/{name}/preview": {
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "a [[feed]] or [[dataset]] name, or a policy zone's name",
            }
        ],
        "get": {
            "summary": "what the feed, dataset or zone would have blocked: the query log of"
            " the last days replayed against it (as `mamori feeds preview`)",
            "security": [{"apiKey": []}, {"authorization": []}],
            "parameters": [
                {
                    "name": "days",
                    "in": "query",
                    "schema": {"type": "number", "minimum": 0, "maximum": MAX_DAYS, "default": 7},
                    "description": "the window: the last N days",
                },
                {
                    "name": "top",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
                    "description": "names and clients listed",
                },
            ],
            "responses": {
                "200": {
                    "description": "the preview",
                    "content": {"application/json": {"schema": _REPORT}},
                },
                "401": _error("no or unknown API key, or no console session"),
                "403": _error("a key whose scope does not cover the request"),
                "404": _error("no such feed, dataset or zone"),
                "409": _error("it cannot be previewed now (not fetched yet, no query log)"),
                "422": _error("a parameter is invalid: field names it"),
                "429": _error("API key over its rate or quota (Retry-After)"),
            },
        },
    },
}
