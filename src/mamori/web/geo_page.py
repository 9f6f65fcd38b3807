"""The console's "Countries" page and ``GET /api/v1/stats/countries``: blocks by
destination country over time.

A blocked answer carries no real address (policy replaced it), so the destination of a
blocked name is where passive DNS saw it resolve: each blocked query of the query log is
counted once for every country of its name's A/AAAA addresses (``[geo]`` databases),
"??" when none is known. Per day (or per hour for a window of two days or less).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mamori.discovery.geo import Geo
from mamori.store.base import QueryLogReader
from mamori.web.apiauth import ApiError, authorize
from mamori.web.console import Console
from mamori.web.i18n import N_

UNKNOWN = "??"  # no address, or no country known for it
MAX_NAMES = 5000  # distinct blocked names looked up in passive DNS per page
TOP_COUNTRIES = 10  # the chart's series (the rest summed as "other")
ADDRESSES_PER_NAME = 50
MAX_DAYS = 366


def name_countries(pdns: Any, geo: Geo, name: str) -> set[str]:
    """The countries of the A/AAAA addresses passive DNS saw for *name*."""
    out: set[str] = set()
    for rrtype in (1, 28):
        for r in pdns.rrset(name, rrtype, limit=ADDRESSES_PER_NAME):
            info = geo.lookup(r.rdata)
            if info is not None and info.country:
                out.add(info.country)
    return out


def blocks_by_country(
    reader: QueryLogReader | None,
    pdns: Any,
    geo: Geo,
    days: int,
    now: float | None = None,
) -> dict[str, Any]:
    """``{"buckets": [start, ...], "series": {country: [blocks per bucket]},
    "totals": [(country, blocks, [top names])], "bucket": seconds}`` for the last
    *days* days; bucket starts are UNIX seconds (UTC days or hours)."""
    now = time.time() if now is None else now
    bucket = 3600 if days <= 2 else 86400
    since = now - days * 86400
    start = int(since // bucket) * bucket
    buckets = list(range(start, int(now) + 1, bucket))
    out: dict[str, Any] = {"buckets": buckets, "series": {}, "totals": [], "bucket": bucket}
    if reader is None:
        return out
    rows = reader.blocks_by_bucket(since, bucket)
    countries: dict[str, set[str]] = {}
    per: dict[str, dict[int, int]] = {}
    names: dict[str, dict[str, int]] = {}
    for t, qname, n in rows:
        if qname not in countries:
            found = name_countries(pdns, geo, qname) if len(countries) < MAX_NAMES else set()
            countries[qname] = found or {UNKNOWN}
        for cc in countries[qname]:
            row = per.setdefault(cc, {})
            row[int(t)] = row.get(int(t), 0) + n
            top = names.setdefault(cc, {})
            top[qname] = top.get(qname, 0) + n
    totals = sorted(((cc, sum(v.values())) for cc, v in per.items()), key=lambda x: (-x[1], x[0]))
    out["totals"] = [
        (cc, n, sorted(names[cc], key=lambda q: (-names[cc][q], q))[:5]) for cc, n in totals
    ]
    shown = [cc for cc, _n in totals[:TOP_COUNTRIES]]
    series = {cc: [per[cc].get(b, 0) for b in buckets] for cc in shown}
    rest = [cc for cc, _n in totals[TOP_COUNTRIES:]]
    if rest:
        series["other"] = [sum(per[cc].get(b, 0) for cc in rest) for b in buckets]
    out["series"] = series
    return out


class GeoPage:
    """``GET /geo?days=N``: the chart and the table (login required, as every page)."""

    def __init__(self, console: Console, pdns: Any, geo: Callable[[], Geo | None]) -> None:
        self.console = console
        self.pdns = pdns
        self.geo = geo

    def routes(self) -> list[Route]:
        return [Route("/geo", self.page), Route("/api/v1/stats/countries", self.api)]

    async def api(self, request: Request) -> Response:
        """The page's figures as JSON (an API key of scope read, or a console session)."""
        try:
            await authorize(request, self.console.keys)
            text = request.query_params.get("days", "7").strip()
            if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
                raise ApiError(400, f"days: must be 1 to {MAX_DAYS}; got {text!r}", "days")
        except ApiError as e:
            return e.response()
        days = int(text)
        geo = await run_in_threadpool(self.geo)
        if geo is None:
            err = ApiError(404, "no address databases: configure [geo]")
            return err.response()
        now = time.time()
        d = await run_in_threadpool(self._data, geo, days, now)
        body = {
            "window": {"days": days, "since": now - days * 86400, "until": now},
            "bucket": d["bucket"],
            "buckets": d["buckets"],
            "series": d["series"],
            "countries": [
                {"country": cc, "blocked": n, "top_names": names} for cc, n, names in d["totals"]
            ],
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def _data(self, geo: Geo, days: int, now: float | None = None) -> dict[str, Any]:
        return blocks_by_country(self.console.data.reader, self.pdns, geo, days, now)

    async def page(self, request: Request) -> Response:
        c = self.console
        if not c.session_user(request):
            return c.login_redirect(request)
        text = request.query_params.get("days", "7")
        days = min(int(text), MAX_DAYS) if text.isdigit() and int(text) > 0 else 7
        geo = await run_in_threadpool(self.geo)  # the first use opens the databases
        data: dict[str, Any] = {"buckets": [], "series": {}, "totals": [], "bucket": 86400}
        if geo is not None:
            data = await run_in_threadpool(self._data, geo, days)
        return c.render_page(
            request, "geo.html", N_("Countries"), enabled=geo is not None, days=days, d=data,
            unknown=UNKNOWN,
        )  # fmt: skip


_COUNT = {"type": "integer", "minimum": 0}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
}
# OpenAPI 3.0 path items, merged into /openapi.json by web/openapi.py
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/stats/countries": {
        "get": {
            "summary": "Blocks by destination country (the countries of the blocked names'"
            " addresses in passive DNS, [geo]) per day, or per hour for 1-2 days",
            "security": [{"apiKey": []}, {"authorization": []}],
            "parameters": [
                {
                    "name": "days",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": 7},
                    "description": "the window: the last this many days",
                }
            ],
            "responses": {
                "200": {
                    "description": "the figures",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["window", "bucket", "buckets", "series", "countries"],
                                "properties": {
                                    "window": {"type": "object"},
                                    "bucket": {"type": "integer", "description": "seconds"},
                                    "buckets": {
                                        "type": "array",
                                        "description": "UNIX times of the buckets' starts",
                                        "items": {"type": "integer"},
                                    },
                                    "series": {
                                        "type": "object",
                                        "description": "country (ISO 3166-1 alpha-2, '??'"
                                        " unknown, 'other') -> blocks per bucket",
                                        "additionalProperties": {
                                            "type": "array",
                                            "items": _COUNT,
                                        },
                                    },
                                    "countries": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["country", "blocked", "top_names"],
                                            "properties": {
                                                "country": {"type": "string"},
                                                "blocked": _COUNT,
                                                "top_names": {
                                                    "type": "array",
                                                    "items": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    },
                },
                "400": {
                    "description": "bad parameter (field: days)",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "401": {
                    "description": "no or unknown API key, no console session",
                    "content": {"application/json": {"schema": _ERROR}},
                },
                "404": {
                    "description": "no address databases ([geo] not configured)",
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
