"""OpenAPI 3 description of the HTTP APIs (served at /openapi.json).

The passive DNS APIs are described here; each REST API module (``/api/v1/``)
describes its own paths in ``OPENAPI_PATHS`` (and schemas in
``OPENAPI_SCHEMAS``): importing the module below is enough to merge them.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from mamori.web import api as rules_api  # noqa: F401 (its OPENAPI_PATHS)
from mamori.web import (
    brand_api,  # noqa: F401 (its OPENAPI_PATHS)
    geo_page,  # noqa: F401 (its OPENAPI_PATHS)
    preview_api,  # noqa: F401 (its OPENAPI_PATHS)
    settings_openapi,  # noqa: F401 (its OPENAPI_PATHS)
    stats_api,  # noqa: F401 (its OPENAPI_PATHS)
)
from mamori.web.pdns_api import MAX_LIMIT

_KEY: list[dict[str, list[str]]] = [{"apiKey": []}, {"basic": []}, {"authorization": []}]
_FENCES = [
    {
        "name": n,
        "in": "query",
        "schema": {"type": "string"},
        "description": "epoch seconds, negative = relative to now, or ISO 8601; inclusive:"
        f" time_{n.split('_')[1]} {'<=' if n.endswith('before') else '>='} this time",
    }
    for n in ("time_first_before", "time_first_after", "time_last_before", "time_last_after")
]
_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 10000}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "default": 0}},
    {"name": "aggr", "in": "query", "schema": {"type": "boolean", "default": True}},
    {"name": "humantime", "in": "query", "schema": {"type": "boolean", "default": False}},
]
_SAF = {
    "200": {
        "description": "Streaming Answer Format: {cond: begin}, {obj: ...}..., "
        "then {cond: succeeded} or {cond: limited}",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
    },
    "400": {"description": "bad request (message in the body)"},
    "401": {"description": "no or unknown API key"},
    "404": {"description": "no such method, flex or search kind (message in the body)"},
    "429": {"description": "rate limit or daily quota, or too many wrong keys from this"
            " address (Retry-After)"},
    "503": {"description": "the passive DNS store cannot answer (ClickHouse down: see the"
            " log; Retry-After)"},
}  # fmt: skip


def _path(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {"get": {"summary": summary, "security": _KEY, "parameters": params, "responses": _SAF}}


def _p(name: str, desc: str, enum: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = list(enum)
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": desc}


_METHOD = ("lookup", "summarize")


SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "mamori HTTP APIs", "version": "1"},
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "basic": {"type": "http", "scheme": "basic"},
            "authorization": {"type": "apiKey", "in": "header", "name": "Authorization"},
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"},
            "session": {
                "type": "apiKey",
                "in": "cookie",
                "name": "mamori_session",
                "description": "the console's session; changes also need X-CSRF-Token",
            },
        },
        "schemas": {},
    },
    "paths": {
        "/pdns/query/{q}": {
            "get": {
                "summary": "CIRCL Common Output Format: records of a name (owner or rdata) or an"
                " address/network",
                "security": _KEY,
                "parameters": [
                    _p("q", "a name, an address, or a CIDR network"),
                    {
                        "name": "dribble-paginate-count",
                        "in": "header",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                    },
                    {
                        "name": "dribble-paginate-cursor",
                        "in": "header",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1 << 62},
                    },
                    {"name": "dribble-filter-rrtype", "in": "header", "schema": {"type": "string"}},
                    *_FENCES,
                    {
                        "name": "geo",
                        "in": "query",
                        "description": "true: A/AAAA records also carry asn, as_name, country"
                        " ([geo] databases; a mamori extension)",
                        "schema": {"type": "boolean"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "NDJSON COF records; x-dribble-cursor when more follow",
                        "headers": {"x-dribble-cursor": {"schema": {"type": "integer"}}},
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    "400": {"description": "bad request (message in the body)"},
                    "401": {"description": "no or unknown API key"},
                    "429": {
                        "description": "rate limit or quota, or too many wrong keys from"
                        " this address (Retry-After)"
                    },
                    "503": {
                        "description": "the passive DNS store cannot answer (ClickHouse"
                        " down: see the log; Retry-After)"
                    },
                },
            }
        },
        "/pdns/asn/{asn}": {
            "get": {
                "summary": "the A/AAAA records whose address is in an AS ([geo] databases), as"
                " COF records with asn, as_name, country",
                "security": _KEY,
                "parameters": [
                    _p("asn", "an AS number: 15169 or AS15169"),
                    {
                        "name": "dribble-paginate-count",
                        "in": "header",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                    },
                    {
                        "name": "dribble-paginate-cursor",
                        "in": "header",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1 << 62},
                    },
                    *_FENCES,
                ],
                "responses": {
                    "200": {
                        "description": "NDJSON COF records; x-dribble-cursor when more follow",
                        "headers": {"x-dribble-cursor": {"schema": {"type": "integer"}}},
                        "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                    },
                    "400": {"description": "not an AS number, or a bad time fence"},
                    "401": {"description": "no or unknown API key"},
                    "404": {"description": "no AS databases: [geo] is not configured"},
                    "503": {
                        "description": "[geo] is configured but its databases could not"
                        " be read, or the passive DNS store cannot answer (see the log)"
                    },
                    "429": {"description": "rate limit or quota (Retry-After)"},
                },
            }
        },
        "/dnsdb/v2/ping": {
            "get": {"summary": "liveness", "responses": {"200": {"description": '{"ping": "ok"}'}}}
        },
        "/dnsdb/v2/rate_limit": {
            "get": {
                "summary": "the key's quota",
                "security": _KEY,
                "responses": {"200": {"description": "quota"}},
            }
        },
        "/dnsdb/v2/{method}/rrset/name/{name}/{rrtype}/{bailiwick}": _path(
            "lookup|summarize by owner name (*.left and right.* wildcards); rrtype and"
            " bailiwick optional",
            [
                _p("method", "lookup or summarize", _METHOD),
                _p("name", "owner name"),
                _p("rrtype", "optional"),
                _p("bailiwick", "optional"),
                *_FENCES,
                *_PAGING,
            ],
        ),
        "/dnsdb/v2/{method}/rdata/name/{name}/{rrtype}": _path(
            "records whose rdata is a name (CNAME, NS, MX, PTR, SRV, DNAME targets)",
            [
                _p("method", "lookup or summarize", _METHOD),
                _p("name", "name"),
                _p("rrtype", "optional"),
                *_FENCES,
                *_PAGING,
            ],
        ),
        "/dnsdb/v2/{method}/rdata/ip/{ip}": _path(
            "A/AAAA records of an address, a network (a.b.c.d,24) or a range (lo-hi)",
            [
                _p("method", "lookup or summarize", _METHOD),
                _p("ip", "address, network or range"),
                *_FENCES,
                *_PAGING,
            ],
        ),
        "/dnsdb/v2/{flex}/{what}/{value}/{rrtype}": _path(
            "flexible search: regex (RE2, linear time) or glob over rrnames or rdata",
            [
                _p("flex", "regex or glob", ("regex", "glob")),
                _p("what", "rrnames or rdata", ("rrnames", "rdata")),
                _p("value", "pattern"),
                _p("rrtype", "optional"),
                *_PAGING,
            ],
        ),
    },
}


def _merge(spec: dict[str, Any], modules: list[ModuleType]) -> None:
    """Add each API module's ``OPENAPI_PATHS`` and ``OPENAPI_SCHEMAS``; a path or
    schema named twice is a programming error."""
    for m in modules:
        for key, into in (("OPENAPI_PATHS", spec["paths"]),
                          ("OPENAPI_SCHEMAS", spec["components"]["schemas"])):  # fmt: skip
            for name, value in getattr(m, key, {}).items():
                if name in into:
                    raise RuntimeError(f"{m.__name__}: {key} {name} is already described")
                into[name] = value


# Every module imported above that describes paths (a new API module: one import line).
_merge(SPEC, [m for m in (globals().values()) if isinstance(m, ModuleType)
              and hasattr(m, "OPENAPI_PATHS")])  # fmt: skip
