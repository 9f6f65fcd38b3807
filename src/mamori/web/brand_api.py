"""The brand watch over HTTP: ``/api/v1/brands`` (the watched brands; console brands are
added and removed as feeds and groups are, ``settings_api.Settings``) and
``/api/v1/brand-matches`` (the look-alikes found: JSON, CSV or STIX 2.1; a pass now).
``web/openapi.py`` merges ``OPENAPI_PATHS`` and ``OPENAPI_SCHEMAS``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mamori.discovery.brand_export import to_csv, to_stix
from mamori.discovery.brand_store import BrandMatches, StoredMatch, brand_db_path
from mamori.discovery.brand_watch import PassResult, brand_index, feed_names, run_pass
from mamori.errors import StoreError
from mamori.pdns.formats import parse_time
from mamori.store.pdns_open import open_pdns_reader
from mamori.store.querylog_open import brand_source
from mamori.web.apiauth import ApiError, authorize, client_address, json_body
from mamori.web.keys import KeyStore
from mamori.web.settings_api import Settings

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
FORMATS = ("json", "csv", "stix")


class BrandWatchData:
    """The matches store and on-demand passes, shared by the API and the console page."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self._matches: BrandMatches | None = None
        self._pass = threading.Lock()  # one pass at a time from the web

    def matches(self) -> BrandMatches:
        if self._matches is None:
            self._matches = BrandMatches(brand_db_path(self.s.cfg.store.path))
        return self._matches

    def search(
        self, brand: str | None, since: float | None, limit: int, offset: int
    ) -> tuple[list[StoredMatch], int]:
        return self.matches().search(brand, since, limit, offset)

    def scan(self) -> PassResult:
        """A pass now, over the config's stores, with the brands in force."""
        cfg = self.s.cfg
        with self._pass:
            index = brand_index(cfg.brands)
            pdns = open_pdns_reader(cfg)
            log = brand_source(cfg)
            try:
                return run_pass(index, self.matches(), pdns, log, feeds=feed_names(cfg))
            finally:
                if pdns is not None:
                    pdns.close()


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer", name) from None
    if not lo <= v <= hi:
        raise ApiError(422, f"{name} must be in {lo}..{hi}", name)
    return v


class BrandApi:
    def __init__(self, settings: Settings, keys: KeyStore, data: BrandWatchData) -> None:
        self.s = settings
        self.keys = keys
        self.data = data

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/brands", self.brands, methods=["GET", "POST"]),
            Route("/api/v1/brands/{name}", self.brand, methods=["GET", "DELETE"]),
            Route("/api/v1/brand-matches", self.matches, methods=["GET"]),
            Route("/api/v1/brand-matches/scan", self.scan, methods=["POST"]),
        ]

    async def brands(self, request: Request) -> Response:
        try:
            actor = await authorize(request, self.keys)
            if request.method == "GET":
                return JSONResponse({"brands": await run_in_threadpool(self.s.brands)})
            body = await json_body(request, 64 << 10)
            out = await self.s.add_brand(actor, client_address(request), body)
            return JSONResponse(out, 201)
        except ApiError as e:
            return e.response()

    async def brand(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            actor = await authorize(request, self.keys)
            if request.method == "GET":
                return JSONResponse(await run_in_threadpool(self.s.brand, name))
            await self.s.remove_brand(actor, client_address(request), name)
            return Response(status_code=204)
        except ApiError as e:
            return e.response()

    async def matches(self, request: Request) -> Response:
        try:
            await authorize(request, self.keys)
            q = request.query_params
            brand = q.get("brand") or None
            if brand is not None and len(brand) > 64:
                raise ApiError(422, "brand: a brand name (up to 64 characters)", "brand")
            fmt = q.get("format") or "json"
            if fmt not in FORMATS:
                raise ApiError(422, f"format is one of {', '.join(FORMATS)}", "format")
            since: float | None = None
            if q.get("since"):
                try:
                    if len(q["since"]) > 64:
                        raise ValueError("too long")
                    since = parse_time(q["since"])
                except ValueError as e:
                    raise ApiError(422, f"since: {e}", "since") from None
                if not -(1 << 53) < since < 1 << 53:
                    raise ApiError(422, "since: out of range", "since")
            limit = _int(request, "limit", 1000, 1, MAX_LIMIT)
            offset = _int(request, "offset", 0, 0, 1 << 31)
            if brand is not None:
                brand = await run_in_threadpool(self._known_brand, brand)
            found, total = await run_in_threadpool(self.data.search, brand, since, limit, offset)
            if fmt == "csv":
                text = await run_in_threadpool(to_csv, found)
                return Response(
                    text,
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="brand-matches.csv"'},
                )
            if fmt == "stix":
                text = await run_in_threadpool(to_stix, found)
                return Response(
                    text,
                    media_type="application/stix+json;version=2.1",
                    headers={"Content-Disposition": 'attachment; filename="brand-matches.json"'},
                )
            return JSONResponse(
                {
                    "matches": [m.as_json() for m in found],
                    "total": total,
                    "limit": limit,
                    "offset": offset,
                }
            )
        except ApiError as e:
            return e.response()

    def _known_brand(self, brand: str) -> str:
        """*brand* as the watch names it: a brand in force (names ignore case), or one
        removed whose matches are still listed. ApiError 404 for neither."""
        names = [b.name for b in self.s.cfg.brands]
        same = next((n for n in names if n.casefold() == brand.casefold()), None)
        if same is not None:
            return same
        if self.data.search(brand, None, 1, 0)[1]:
            return brand
        known = ", ".join(names) or "none"
        raise ApiError(404, f"no brand named {brand} (watched: {known})", "brand")

    async def scan(self, request: Request) -> Response:
        try:
            await authorize(request, self.keys)
            try:
                r = await run_in_threadpool(self.data.scan)
            except StoreError as e:  # passive DNS cannot answer (ClickHouse away)
                log.error("brand watch: scan: %s", e)
                err = ApiError(503, "passive DNS cannot be read now (see the server log);"
                               " try again later")  # fmt: skip
                err.retry_after = 30
                raise err from None
            return JSONResponse(
                {
                    "names": r.names,
                    "matched": r.matched,
                    "new": len(r.new),
                    "seconds": round(r.seconds, 3),
                }
            )
        except ApiError as e:
            return e.response()


# ------------------------------------------------------------------ OpenAPI
_SEC: list[dict[str, list[str]]] = [{"apiKey": []}, {"authorization": []}, {"session": []}]
_BRAND_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "bad request (not JSON, not an object)",
        403: "a read-only key, or a console session without its X-CSRF-Token, on a change",
        404: "no such brand (names ignore case)",
        409: "conflicts with the configuration (defined in the user's TOML, exists: brand"
        " names ignore case)",
        413: "body too large",
        415: "send application/json",
        422: "a value is invalid: field names it",
        503: "passive DNS cannot be read now (ClickHouse down: see the log; Retry-After)",
    }
    out = {
        "401": _json("no or unknown API key, and no console session", "Error"),
        "429": _json("the key is over its rate or quota (Retry-After)", "Error"),
    }
    out.update({str(c): _json(why[c], "Error") for c in codes})
    return out


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_STRS = {"type": "array", "items": {"type": "string"}}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "BrandInput": {
        "type": "object",
        "required": ["name", "domains"],
        "properties": {
            "name": _BRAND_NAME,
            "domains": {**_STRS, "minItems": 1, "description": "registrable domains"},
            "keywords": {
                **_STRS,
                "description": "words of 3+ characters; left out: the"
                " domains' first labels of 4+ characters",
            },
        },
        "additionalProperties": False,
    },
    "Brand": {
        "type": "object",
        "required": ["name", "domains", "keywords", "origin", "defined_at"],
        "properties": {
            "name": {"type": "string"},
            "domains": _STRS,
            "keywords": _STRS,
            "origin": {"type": "string", "enum": ["toml", "console"]},
            "defined_at": {"type": "string"},
            "applied": {"type": "boolean", "description": "in force now (after a reload)"},
        },
    },
    "BrandList": {
        "type": "object",
        "required": ["brands"],
        "properties": {"brands": {"type": "array", "items": _ref("Brand")}},
    },
    "BrandMatch": {
        "type": "object",
        "required": [
            "brand",
            "name",
            "registrable",
            "target",
            "kind",
            "distance",
            "similarity",
            "same_suffix",
            "time_first",
            "time_last",
            "sources",
            "resolves",
            "addresses",
            "clients",
            "detected",
        ],
        "properties": {
            "brand": {"type": "string"},
            "name": {"type": "string", "description": "observed name (A-labels, no final dot)"},
            "registrable": {"type": "string"},
            "target": {"type": "string", "description": "the brand domain it imitates"},
            "kind": {
                "type": "string",
                "description": "dnstwist fuzzer, tld-swap, various,"
                " idn-homograph, edit-distance or keyword",
            },
            "distance": {"type": "integer", "description": "Levenshtein distance of labels"},
            "similarity": {"type": "number", "description": "visual similarity 0..1"},
            "same_suffix": {"type": "boolean"},
            "time_first": {"type": "integer", "description": "UNIX seconds; 0 unknown"},
            "time_last": {"type": "integer", "description": "UNIX seconds; 0 unknown"},
            "sources": _STRS,
            "resolves": {"type": "boolean"},
            "addresses": _STRS,
            "clients": _STRS,
            "detected": {"type": "number", "description": "when the watch found it (UNIX)"},
        },
    },
    "BrandMatchList": {
        "type": "object",
        "required": ["matches", "total", "limit", "offset"],
        "properties": {
            "matches": {"type": "array", "items": _ref("BrandMatch")},
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    },
    "BrandPass": {
        "type": "object",
        "required": ["names", "matched", "new", "seconds"],
        "properties": {
            "names": {"type": "integer", "description": "names read and matched"},
            "matched": {"type": "integer"},
            "new": {"type": "integer", "description": "matches not known before"},
            "seconds": {"type": "number"},
        },
    },
}
_NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": _BRAND_NAME}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/brands": {
        "get": {
            "summary": "the watched brands ([[brand]] of the TOML and of the console)",
            "security": _SEC,
            "responses": {"200": _json("the brands", "BrandList"), **_errors()},
        },
        "post": {
            "summary": "watch a brand (kept in the console's file; a pass runs at once)",
            "security": _SEC,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("BrandInput")}},
            },
            "responses": {
                "201": _json("the brand", "Brand"),
                **_errors(400, 403, 409, 413, 415, 422),
            },
        },
    },
    "/api/v1/brands/{name}": {
        "get": {
            "summary": "one watched brand",
            "security": _SEC,
            "parameters": [_NAME_PARAM],
            "responses": {"200": _json("the brand", "Brand"), **_errors(404)},
        },
        "delete": {
            "summary": "stop watching a console brand (its matches stay listed)",
            "security": _SEC,
            "parameters": [_NAME_PARAM],
            "responses": {"204": {"description": "removed"}, **_errors(403, 404, 409, 422)},
        },
    },
    "/api/v1/brand-matches": {
        "get": {
            "summary": "look-alikes found (newest detection first): JSON, CSV or STIX 2.1",
            "security": _SEC,
            "parameters": [
                _q(
                    "brand",
                    {"type": "string", "maxLength": 64},
                    "only this brand (its name, in any case; 404 for a brand neither watched"
                    " nor with matches listed)",
                ),
                _q(
                    "since",
                    {"type": "string", "maxLength": 64},
                    "detected or last seen at or after: epoch seconds or -seconds (ago);"
                    " ISO 8601 or 1w2d3h is accepted too",
                ),
                _q(
                    "format",
                    {"type": "string", "enum": list(FORMATS), "default": "json"},
                    "json (BrandMatchList), csv (RFC 4180) or stix (a STIX 2.1 bundle of"
                    " indicators)",
                ),
                _q(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 1000},
                    "matches per page",
                ),
                _q(
                    "offset",
                    {"type": "integer", "minimum": 0, "maximum": 1 << 31, "default": 0},
                    "matches to skip",
                ),
            ],
            "responses": {
                "200": {
                    "description": "the matches",
                    "content": {
                        "application/json": {"schema": _ref("BrandMatchList")},
                        "text/csv": {"schema": {"type": "string"}},
                        "application/stix+json": {"schema": {"type": "object"}},
                    },
                },
                **_errors(404, 422),
            },
        },
    },
    "/api/v1/brand-matches/scan": {
        "post": {
            "summary": "run a pass of the brand watch now (names observed since the last)",
            "security": _SEC,
            "responses": {
                "200": _json("what the pass did", "BrandPass"),
                **_errors(403, 503),
            },
        },
    },
}
