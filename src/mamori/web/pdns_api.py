"""Passive DNS over HTTP: CIRCL's Common Output Format and DNSDB API v2 (SAF), as
their clients (pypdns, dnsdb2, dnsdbq) expect them.

Every request needs an API key (``mamori keys add``) except ``/dnsdb/v2/ping``:
``X-API-Key: KEY``, ``Authorization: KEY`` (or ``Bearer KEY``), or HTTP Basic
with the key as the password. Store lookups run in Starlette's thread pool.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import re2  # google-re2: linear-time regular expressions (no ReDoS)
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from mamori.discovery.geo import Geo, parse_asn, record_geo, records_on_asn
from mamori.errors import StoreError
from mamori.pdns import formats, query
from mamori.pdns.model import type_code, type_text
from mamori.store.pdns_base import Fences, PdnsStore, Record
from mamori.store.pdns_open import distinct_values
from mamori.web.keys import KeyStore, Refused

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
DEFAULT_LIMIT = 10000
MAX_LIMIT = 1_000_000
COF_PAGE = 1000


class BadRequest(Exception):  # noqa: N818
    pass


class PdnsApi:
    def __init__(
        self,
        store: PdnsStore,
        keys: KeyStore,
        geo: Callable[[], Geo | None] | None = None,
        geo_broken: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.geo = geo or (lambda: None)
        self.geo_broken = geo_broken or (lambda: False)  # configured but unreadable

    def routes(self) -> list[Route]:
        g = _store_guard
        return [
            Route("/pdns/asn/{asn:str}", g(self.asn)),
            Route("/pdns/query/{q:path}", g(self.cof)),
            Route("/dnsdb/v2/ping", self.ping),
            Route("/dnsdb/v2/rate_limit", self.rate_limit),
            Route("/dnsdb/v2/{method:str}/rrset/name/{rest:path}", g(self.rrset)),
            Route("/dnsdb/v2/{method:str}/rdata/name/{rest:path}", g(self.rdata_name)),
            Route("/dnsdb/v2/{method:str}/rdata/ip/{rest:path}", g(self.rdata_ip)),
            Route("/dnsdb/v2/{method:str}/rdata/raw/{rest:path}", self.rdata_raw),
            Route("/dnsdb/v2/{flex:str}/{what:str}/{rest:path}", g(self.flex)),
        ]

    # ------------------------------------------------------------------ auth
    def _auth(self, request: Request) -> str:
        h = request.headers
        key = h.get("x-api-key")
        auth = h.get("authorization", "")
        if not key and auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "basic" and value:
                try:
                    user, _, password = base64.b64decode(value).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise Refused(401, "bad Basic credentials") from None
                key = password or user
            elif scheme.lower() in ("bearer", "token") and value:
                key = value
            else:
                key = auth.strip()
        return self.keys.check(key)

    @staticmethod
    def _refused(e: Refused) -> Response:
        headers = {"Retry-After": str(e.retry_after)} if e.retry_after else {}
        return PlainTextResponse(str(e) + "\n", e.status, headers=headers)

    # ------------------------------------------------------------------ COF
    async def cof(self, request: Request) -> Response:
        try:
            self._auth(request)
            q = request.path_params["q"].strip()
            count = _int(request.headers.get("dribble-paginate-count"), COF_PAGE, MAX_LIMIT)
            cursor = _int(request.headers.get("dribble-paginate-cursor"), 0, 1 << 62)
            rtype = request.headers.get("dribble-filter-rrtype")
            rrtype = type_code(rtype) if rtype else None
            fences = _fences(request.query_params)  # a mamori extension of COF
        except Refused as e:
            return self._refused(e)
        except (ValueError, BadRequest) as e:
            return PlainTextResponse(f"{e}\n", 400)
        from starlette.concurrency import run_in_threadpool

        try:
            records = await run_in_threadpool(
                query.name_or_address, self.store, q, rrtype, cursor + count + 1, fences
            )
        except ValueError as e:
            return PlainTextResponse(f"{e}\n", 400)
        page = records[cursor : cursor + count]
        geo = None  # ?geo=true: a mamori extension (the first use opens the databases)
        if _true(request.query_params.get("geo")):
            geo = await run_in_threadpool(self.geo)
        return self._cof_page(page, geo, len(records) > cursor + count, cursor + count)

    @staticmethod
    def _cof_page(page: list[Record], geo: Geo | None, more: bool, next_cursor: int) -> Response:
        lines = []
        for r in page:
            g = record_geo(geo, r.rrtype, r.rdata)
            lines.append(json.dumps({**formats.cof(r), **(g.fields() if g else {})}) + "\n")
        headers = {"x-dribble-cursor": str(next_cursor)} if more else {}
        return Response("".join(lines), media_type=NDJSON, headers=headers)

    async def asn(self, request: Request) -> Response:
        """mamori's pivot: the A/AAAA records whose address is in an AS (``[geo]``), as
        COF records with ``asn``, ``as_name``, ``country``; paginated as COF is."""
        try:
            self._auth(request)
            asn = parse_asn(request.path_params["asn"])
            count = _int(request.headers.get("dribble-paginate-count"), COF_PAGE, MAX_LIMIT)
            cursor = _int(request.headers.get("dribble-paginate-cursor"), 0, 1 << 62)
            fences = _fences(request.query_params)
        except Refused as e:
            return self._refused(e)
        except (ValueError, BadRequest) as e:
            return PlainTextResponse(f"{e}\n", 400)
        from starlette.concurrency import run_in_threadpool

        geo = await run_in_threadpool(self.geo)
        if self.geo_broken():
            msg = "the [geo] databases could not be read (see the log)\n"
            return PlainTextResponse(msg, 503)
        if geo is None or not (geo.mmdbs or geo.tsvs):
            return PlainTextResponse("no AS databases: configure [geo] mmdb or ip2asn\n", 404)
        records = await run_in_threadpool(
            records_on_asn, self.store, geo, asn, fences, count + 1, cursor
        )
        return self._cof_page(records[:count], geo, len(records) > count, cursor + count)

    # ------------------------------------------------------------------ DNSDB
    async def ping(self, _request: Request) -> Response:
        return JSONResponse({"ping": "ok"})

    async def rate_limit(self, request: Request) -> Response:
        try:
            name = self._auth(request)
        except Refused as e:
            return self._refused(e)
        return JSONResponse(self.keys.rate_info(name))

    async def rrset(self, request: Request) -> Response:
        def ask(parts: list[str]) -> query.Ask:
            name = parts[0]
            rtype = parts[1] if len(parts) > 1 else ""
            bw = parts[2] if len(parts) > 2 else None
            return query.Ask("rrset", name, _rtype(rtype), bw)

        return await self._lookup(request, ask, aggregate=True)

    async def rdata_name(self, request: Request) -> Response:
        def ask(parts: list[str]) -> query.Ask:
            name = parts[0]
            if name.startswith("."):
                name = "*" + name  # DNSDB's ".example.com" left-hand form
            return query.Ask("rdata-name", name, _rtype(parts[1] if len(parts) > 1 else ""))

        return await self._lookup(request, ask, aggregate=False)

    async def rdata_ip(self, request: Request) -> Response:
        return await self._lookup(
            request, lambda parts: query.parse_rdata_ip(parts[0]), aggregate=False
        )

    async def rdata_raw(self, request: Request) -> Response:
        return PlainTextResponse("raw rdata lookups are not supported (rdata kept as text)\n", 400)

    async def _lookup(self, request: Request, make: Any, aggregate: bool) -> Response:
        method = request.path_params["method"]
        if method not in ("lookup", "summarize"):
            return PlainTextResponse(f"unknown method {method!r}\n", 404)
        try:
            self._auth(request)
            parts = [p for p in request.path_params["rest"].split("/") if p]
            if not parts:
                raise BadRequest("missing the name or address")
            ask = make(parts)
            params = request.query_params
            fences = _fences(params)
            limit = _int(params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT
            offset = _int(params.get("offset"), 0, 1 << 62)
            aggr = params.get("aggr", "true").lower() not in ("false", "0", "no")
            human = params.get("humantime", "false").lower() in ("true", "1", "yes")
        except Refused as e:
            return self._refused(e)
        except (ValueError, BadRequest) as e:
            return PlainTextResponse(f"{e}\n", 400)
        from starlette.concurrency import run_in_threadpool

        if method == "summarize":
            max_count = _int(params.get("max_count"), MAX_LIMIT, MAX_LIMIT)
            records = await run_in_threadpool(query.run, self.store, ask, fences, max_count, 0)
            return _saf([_summary(records, human)], limited=False)
        records = await run_in_threadpool(query.run, self.store, ask, fences, MAX_LIMIT, 0)
        if aggregate and aggr:
            objs = _aggregate(records)
        else:  # DNSDB: an rdata lookup gives one rdata string per object
            objs = [formats.cof(r) for r in records]
            if not aggregate:
                for o in objs:
                    o["rdata"] = o["rdata"][0]
        page = objs[offset : offset + limit]
        if human:
            for o in page:
                for k in ("time_first", "time_last"):
                    o[k] = formats.iso(o[k]).replace(" ", "T") + "Z"
        return _saf(page, limited=len(objs) > offset + limit)

    async def flex(self, request: Request) -> Response:
        flex, what = request.path_params["flex"], request.path_params["what"]
        if flex not in ("regex", "glob") or what not in ("rrnames", "rdata"):
            return PlainTextResponse("not found\n", 404)
        try:
            self._auth(request)
            parts = request.path_params["rest"].split("/")
            value = parts[0]
            rrtype = _rtype(parts[1] if len(parts) > 1 else "")
            limit = _int(request.query_params.get("limit"), DEFAULT_LIMIT, MAX_LIMIT)
            limit = limit or DEFAULT_LIMIT
            offset = _int(request.query_params.get("offset"), 0, 1 << 62)
            matcher = _matcher(flex, value)
        except Refused as e:
            return self._refused(e)
        except (ValueError, BadRequest) as e:
            return PlainTextResponse(f"{e}\n", 400)
        from starlette.concurrency import run_in_threadpool

        objs = await run_in_threadpool(self._flex, what, matcher, rrtype, offset + limit + 1)
        return _saf(objs[offset : offset + limit], limited=len(objs) > offset + limit)

    def _flex(
        self, what: str, matcher: Any, rrtype: int | None, limit: int
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for value, rtype in distinct_values(self.store, what, rrtype):
            if matcher(value):
                key = "rrname" if what == "rrnames" else "rdata"
                out.append({key: value, "rrtype": type_text(rtype)})
                if len(out) >= limit:
                    break
        return out


UNAVAILABLE = "the passive DNS store is unavailable (see the server log); try again later\n"


def _store_guard(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """*handler*, answering 503 (``Retry-After: 30``) when the store cannot answer
    (``StoreError``: ClickHouse down or refusing, a damaged file) instead of a 500; the
    cause (server address included) goes to the log, not to the client."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except StoreError as e:
            log.error("passive DNS API %s: %s", request.url.path, e)
            return PlainTextResponse(UNAVAILABLE, 503, headers={"Retry-After": "30"})

    return guarded


def _saf(objs: list[dict[str, Any]], limited: bool) -> Response:
    def lines() -> Iterator[str]:
        yield json.dumps({"cond": "begin"}) + "\n"
        for o in objs:
            yield json.dumps({"obj": o}) + "\n"
        end = {"cond": "succeeded"}
        if limited:
            end = {"cond": "limited", "msg": "Result limit reached"}
        yield json.dumps(end) + "\n"

    return StreamingResponse(lines(), media_type=NDJSON)


def _aggregate(records: list[Record]) -> list[dict[str, Any]]:
    """DNSDB rrsets: tuples of one (rrname, rrtype, bailiwick) together."""
    groups: dict[tuple[str, int, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.rrname, r.rrtype, r.bailiwick), []).append(r)
    out = []
    for (name, rtype, bw), rs in groups.items():
        o: dict[str, Any] = {
            "count": sum(r.count for r in rs),
            "time_first": min(r.time_first for r in rs),
            "time_last": max(r.time_last for r in rs),
            "rrname": name,
            "rrtype": type_text(rtype),
            "rdata": sorted(r.rdata for r in rs),
        }
        if bw:
            o["bailiwick"] = bw
        out.append(o)
    return out


def _summary(records: list[Record], human: bool) -> dict[str, Any]:
    if not records:
        return {"count": 0, "num_results": 0}
    first = min(r.time_first for r in records)
    last = max(r.time_last for r in records)
    out: dict[str, Any] = {
        "count": sum(r.count for r in records),
        "num_results": len(records),
        "time_first": formats.iso(first) if human else first,
        "time_last": formats.iso(last) if human else last,
    }
    return out


def _matcher(flex: str, value: str) -> Any:
    try:
        if flex == "glob":
            whole = re2.compile(_glob_regex(value))
            return lambda s: whole.fullmatch(s) is not None
        pattern = re2.compile(value)
    except re2.error as e:
        raise BadRequest(f"bad regular expression: {e}") from None
    return lambda s: pattern.search(s) is not None


def _glob_regex(glob: str) -> str:
    """DNSDB glob (``*``, ``?``, ``[...]``) as an RE2 pattern for a whole-string match."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in glob[i + 2 :]:
            end = glob.index("]", i + 2)
            body = glob[i + 1 : end].replace("\\", "\\\\")
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re2.escape(c))
        i += 1
    return "".join(out)


def _fences(params: Any) -> Fences:
    """``time_first_before``, ``time_first_after``, ``time_last_before``,
    ``time_last_after`` (epoch, negative = relative, ISO 8601, ``1w2d``): inclusive
    fences (``Fences``); ValueError for a value that is not a time."""
    now = time.time()

    def get(name: str) -> int | None:
        v = params.get(name)
        if v is None or v == "":
            return None
        return formats.parse_time(v, now)

    return Fences(
        first_before=get("time_first_before"),
        first_after=get("time_first_after"),
        last_before=get("time_last_before"),
        last_after=get("time_last_after"),
    )


def _rtype(text: str) -> int | None:
    if not text or text.upper() == "ANY":
        return None
    return type_code(text)


def _true(text: str | None) -> bool:
    return (text or "").lower() in ("1", "true", "yes")


def _int(text: str | None, default: int, maximum: int) -> int:
    if text is None or text == "":
        return default
    try:
        v = int(text)
    except ValueError:
        raise BadRequest(f"not a number: {text!r}") from None
    if v < 0 or v > maximum:
        raise BadRequest(f"out of range: {v}")
    return v
