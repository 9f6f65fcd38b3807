"""``GET /api/v1/stats``: the console overview's figures as JSON.

Totals and the hourly series of queries and blocks, blocks by category, the
most blocked names and the clients with the most blocks over the last
``hours`` (default 24), of one ``node`` or every node, from
``ConsoleData.overview`` (what the overview page shows); the cache hit rate
and upstreams up when the DNS service runs in the same process. Client
addresses are as the query log keeps them (``[store] client_addresses``).
An API key (``X-API-Key``) or a console session.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mamori.web.api import str_param
from mamori.web.apiauth import ApiError, authorize
from mamori.web.consoledata import ConsoleData
from mamori.web.keys import KeyStore

MAX_HOURS = 24 * 366


def _hours(request: Request) -> int:
    text = request.query_params.get("hours", "24").strip()
    try:
        hours = int(text)
    except ValueError:
        raise ApiError(400, f"hours: not an integer: {text!r}", "hours") from None
    if not 1 <= hours <= MAX_HOURS:
        raise ApiError(400, f"hours: must be 1 to {MAX_HOURS}; got {hours}", "hours")
    return hours


def _node(request: Request) -> str:
    """``node``: one node's figures (its ``[server] node_name``); "" for every node.
    Raises ApiError 422 as ``/api/v1/queries`` does (longer than 64, a NUL)."""
    return str_param(request, "node", 64)


class StatsApi:
    def __init__(self, data: ConsoleData, keys: KeyStore, runtime: Any = None) -> None:
        self.data = data
        self.keys = keys
        self.runtime = runtime

    def routes(self) -> list[Route]:
        return [Route("/api/v1/stats", self.stats, methods=["GET"])]

    async def stats(self, request: Request) -> Response:
        try:
            await authorize(request, self.keys)
            hours = _hours(request)
            node = _node(request)
        except ApiError as e:
            return e.response()
        now = time.time()
        o = await run_in_threadpool(self.data.overview, hours, now, node)
        body: dict[str, Any] = {
            "window": {"hours": hours, "since": now - hours * 3600, "until": now},
            "node": node,
            "queries": o["queries"],
            "blocked": o["blocked"],
            "series": [{"hour": h, "queries": n, "blocked": b} for h, n, b in o["series"]],
            "blocks_by_category": o["by_category"],
            "top_blocked": [
                {"name": name, "zone": zone, "count": n} for name, zone, n in o["top_names"]
            ],
            "top_clients": [{"client": c, "blocked": n} for c, n in o["top_clients"]],
            "cache_hit_rate": None,
            "upstreams": None,
        }
        rt = self.runtime
        if rt is not None and rt.snapshots():
            st = rt.stats()
            hits, misses = st.get("cache_hits", 0), st.get("cache_misses", 0)
            body["cache_hit_rate"] = hits / (hits + misses) if hits + misses else None
            ups = rt.upstreams()
            body["upstreams"] = {"up": sum(1 for u in ups if u.up), "total": len(ups)}
        return JSONResponse(body, headers={"Cache-Control": "no-store"})


_COUNT = {"type": "integer", "minimum": 0}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
}
_STATS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "window",
        "node",
        "queries",
        "blocked",
        "series",
        "blocks_by_category",
        "top_blocked",
        "top_clients",
        "cache_hit_rate",
        "upstreams",
    ],
    "properties": {
        "window": {
            "type": "object",
            "required": ["hours", "since", "until"],
            "properties": {
                "hours": {"type": "integer"},
                "since": {"type": "number", "description": "UNIX time"},
                "until": {"type": "number", "description": "UNIX time"},
            },
        },
        "node": {"type": "string", "description": 'the node asked for ("": every node)'},
        "queries": _COUNT,
        "blocked": _COUNT,
        "series": {
            "type": "array",
            "description": "one item per hour of the window, oldest first",
            "items": {
                "type": "object",
                "required": ["hour", "queries", "blocked"],
                "properties": {
                    "hour": {"type": "integer", "description": "UNIX time of the hour's start"},
                    "queries": _COUNT,
                    "blocked": _COUNT,
                },
            },
        },
        "blocks_by_category": {
            "type": "object",
            "description": "blocks per feed category (a zone without one: its name)",
            "additionalProperties": _COUNT,
        },
        "top_blocked": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "zone", "count"],
                "properties": {
                    "name": {"type": "string"},
                    "zone": {"type": "string"},
                    "count": _COUNT,
                },
            },
        },
        "top_clients": {
            "type": "array",
            "description": "clients with the most blocks, as the query log keeps them"
            " ([store] client_addresses: '-' for none)",
            "items": {
                "type": "object",
                "required": ["client", "blocked"],
                "properties": {"client": {"type": "string"}, "blocked": _COUNT},
            },
        },
        "cache_hit_rate": {
            "type": "number",
            "nullable": True,
            "description": "since start; null without a DNS service in this process",
        },
        "upstreams": {
            "type": "object",
            "nullable": True,
            "properties": {"up": _COUNT, "total": _COUNT},
        },
    },
}

# OpenAPI 3.0 path items, merged into /openapi.json by web/openapi.py
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/stats": {
        "get": {
            "summary": "The overview's figures: totals, hourly series, blocks by category,"
            " top blocked names and clients over the last `hours`",
            "security": [{"apiKey": []}, {"authorization": []}],
            "parameters": [
                {
                    "name": "hours",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_HOURS,
                        "default": 24,
                    },
                    "description": "the window: the last this many hours",
                },
                {
                    "name": "node",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": 64},
                    "description": "one node's figures (its [server] node_name); every node's"
                    " when absent",
                },
            ],
            "responses": {
                "200": {
                    "description": "the figures",
                    "content": {"application/json": {"schema": _STATS_SCHEMA}},
                },
                "400": {
                    "description": "bad parameter (field: hours)",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "422": {
                    "description": "node longer than 64 characters or holding a NUL"
                    " (field: node), as /api/v1/queries",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "401": {
                    "description": "no or unknown API key, no console session",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "503": {
                    "description": "the store does not answer (a ClickHouse that is away)",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "429": {
                    "description": "the key's rate limit or daily quota (Retry-After)",
                    "content": {"application/json": {"schema": _ERROR}},
                },
            },
        }
    }
}
