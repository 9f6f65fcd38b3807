"""The REST API core (``/api/v1/``): local rules, the query log, explain, the audit log.

Authentication as web/apiauth.py says (an API key, or the console session with
its CSRF token on changes). A rule change is written to the rules table and
its audit entry in one transaction, the managed zones rewritten, and the
running service told (``Runtime.zones_changed``) before the answer goes out.
Errors are JSON naming the field at fault; nothing is half-written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mamori import config as cfgmod
from mamori.pdns import formats
from mamori.store.audit import AuditEntry, AuditLog, audit_path
from mamori.store.rules import Rule, RuleError, RuleStore, check_rule, rule_name
from mamori.web.apiauth import ApiError, authorize, client_address, json_body
from mamori.web.consoledata import QUERY_COLUMNS, ConsoleData, QueryFilter
from mamori.web.keys import KeyStore

Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT = 1000


def int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """A query parameter as an integer in lo..hi; ApiError 422 naming it."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise ApiError(422, f"{name} must be between {lo} and {hi}", name)
    return value


def str_param(request: Request, name: str, limit: int = 253) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > limit:
        raise ApiError(422, f"{name} longer than {limit} characters", name)
    if "\x00" in value:
        raise ApiError(422, f"{name} holds a NUL character", name)
    return value


def audit_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "time": e.time,
        "actor": e.actor,
        "address": e.address,
        "action": e.action,
        "target": e.target,
        "detail": e.detail,
    }


class Api:
    """The ``/api/v1/`` routes of this module (web/app.py mounts them)."""

    def __init__(self, cfg: cfgmod.Config, keys: KeyStore, runtime: Any = None) -> None:
        self.cfg = cfg
        self.keys = keys
        self.runtime = runtime
        self.audit = AuditLog(audit_path(cfg.store.path.parent))
        self.rules = RuleStore(self.audit, cfg)
        self.data = ConsoleData(cfg, lambda: runtime.config if runtime is not None else None)

    def config(self) -> cfgmod.Config:
        """The configuration in force (after reloads when the service runs)."""
        rt = self.runtime
        current = rt.config if rt is not None else None
        return current if current is not None else self.cfg

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/rules", self._wrap(self.rules_endpoint), methods=["GET", "POST"]),
            Route("/api/v1/rules/{name}", self._wrap(self.delete_rule), methods=["DELETE"]),
            Route("/api/v1/queries", self._wrap(self.queries), methods=["GET"]),
            Route("/api/v1/explain", self._wrap(self.explain), methods=["GET"]),
            Route("/api/v1/audit", self._wrap(self.audit_entries), methods=["GET"]),
        ]

    @staticmethod
    def _wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as e:
                return e.response()

        return endpoint

    # ------------------------------------------------------------ rules
    async def rules_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.add_rule(request)
        await authorize(request, self.keys)
        q = str_param(request, "q")
        limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
        offset = int_param(request, "offset", 0, 0, 1 << 31)
        assert limit is not None and offset is not None
        rules, total = await run_in_threadpool(self.rules.search, q, limit, offset)
        return JSONResponse(
            {
                "rules": [r.as_json() for r in rules],
                "total": total,
                "limit": limit,
                "offset": offset,
            }
        )

    async def add_rule(self, request: Request) -> Response:
        actor = await authorize(request, self.keys)
        doc = await json_body(request, 16 << 10)
        cfg = self.config()
        try:
            fields = check_rule(doc, {g.name for g in cfg.groups})
        except RuleError as e:
            raise ApiError(422, str(e), e.field) from None
        rule, created = await self.change(
            lambda: self.rules.add(fields, actor, client_address(request))
        )
        return JSONResponse(rule.as_json(), 201 if created else 200)

    async def delete_rule(self, request: Request) -> Response:
        actor = await authorize(request, self.keys)
        try:
            name = rule_name(request.path_params["name"])
        except RuleError as e:
            raise ApiError(422, str(e), e.field) from None
        groups: tuple[str, ...] | None = None
        if "groups" in request.query_params:
            text = request.query_params["groups"]
            groups = tuple(sorted({g.strip() for g in text.split(",") if g.strip()}))
        gone: list[Rule] = await self.change(
            lambda: self.rules.remove(name, actor, client_address(request), groups)
        )
        if not gone:
            raise ApiError(404, f"no rule for {name}", "name")
        return JSONResponse({"removed": [r.as_json() for r in gone]})

    async def change(self, write: Callable[[], Any]) -> Any:
        """Run a rule change (table, audit entry, zone files) off the loop; then have the
        running service compile and distribute the zones before answering."""
        self.rules.cfg = self.config()
        try:
            result = await run_in_threadpool(write)
        except OSError as e:
            raise ApiError(503, f"the rules zone could not be written: {e.strerror}") from None
        except sqlite3.Error as e:
            raise ApiError(503, f"the rules table could not be written: {e}") from None
        rt = self.runtime
        if rt is not None and rt.zones_changed is not None:
            await rt.zones_changed()
        return result

    # ------------------------------------------------------------ query log
    async def queries(self, request: Request) -> Response:
        await authorize(request, self.keys)
        since_text = str_param(request, "since", 64)
        since = None
        if since_text:
            try:
                since = float(formats.parse_time(since_text))
            except ValueError:
                raise ApiError(
                    422, "since must be a time (epoch, -seconds, ISO 8601)", "since"
                ) from None
        action = str_param(request, "action", 32)
        f = QueryFilter(
            str_param(request, "client", 64),
            str_param(request, "name"),
            action,
            str_param(request, "zone"),
            since,
            device=str_param(request, "device", 64),
            node=str_param(request, "node", 64),
        )
        before = int_param(request, "before", None, 1, (1 << 63) - 1)
        limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
        assert limit is not None
        rows = await run_in_threadpool(self.data.queries, f, before, limit)
        out = [dict(zip(QUERY_COLUMNS, r, strict=False)) for r in rows]
        nxt = out[-1]["id"] if len(out) == limit else None
        return JSONResponse({"queries": out, "next_before": nxt})

    # ------------------------------------------------------------ explain
    async def explain(self, request: Request) -> Response:
        await authorize(request, self.keys)
        from mamori.dnsutil import wire
        from mamori.pdns.model import type_code

        raw = str_param(request, "name")
        if not raw:
            raise ApiError(422, "name is missing", "name")
        try:
            name = rule_name(raw)
        except RuleError as e:
            raise ApiError(422, str(e), "name") from None
        qtype_text = str_param(request, "qtype", 16).upper() or "A"
        try:
            qtype = type_code(qtype_text)
        except (ValueError, KeyError):
            raise ApiError(422, f"unknown query type {qtype_text}", "qtype") from None
        client = str_param(request, "client", 64) if "client" in request.query_params else None
        if client is not None:
            import ipaddress

            try:
                client = str(ipaddress.ip_address(client))
            except ValueError:
                raise ApiError(422, "client must be an IP address", "client") from None
        rt = self.runtime
        # the client's view: the zones without groups and those of its [[group]]s
        policy = rt.policy_for(client) if rt is not None else None
        if policy is None:
            raise ApiError(409, "no policy in force: explain needs a running mamori serve")
        groups = list(rt.groups_of(client)) if client is not None else []
        found, _ = policy.check_query_typed(client, wire.text_to_name(name).lower(), qtype)
        match = None
        if found is not None:
            match = {
                "action": found.hit[3],
                "rule": found.rule.rule_name,
                "zone": found.rule.zone,
                "category": self.data.category.get(found.rule.zone, ""),
                # the zone's [[group]]s ([]: everyone): without a client, every zone counts
                "groups": next(
                    (list(st.groups) for st in policy.settings if st.name == found.rule.zone), []
                ),
            }
        return JSONResponse(
            {"name": name, "qtype": qtype_text, "client": client, "groups": groups, "match": match}
        )

    # ------------------------------------------------------------ audit log
    async def audit_entries(self, request: Request) -> Response:
        await authorize(request, self.keys)
        q = str_param(request, "q")
        before = int_param(request, "before", None, 1, (1 << 63) - 1)
        limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
        assert limit is not None
        entries = await run_in_threadpool(self.audit.entries, limit, before, q)
        out = [audit_json(e) for e in entries]
        nxt = out[-1]["id"] if len(out) == limit else None
        return JSONResponse({"entries": out, "next_before": nxt, "now": time.time()})


__all__ = ["Api", "audit_json", "int_param", "str_param"]


# ---------------------------------------------------------------- OpenAPI
# Merged into /openapi.json by web/openapi.py (every API module imported there).
_AUTH: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}, {"session": []}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "the body is not a JSON object",
        401: "no or unknown API key, and no console session",
        403: "console session without the X-CSRF-Token header (changes only)",
        404: "nothing by that name",
        409: "no running service to ask",
        413: "body too large",
        415: "the body is not application/json",
        422: "a field is wrong: the error names it",
        429: "the key is over its rate or quota (Retry-After)",
        503: "the rules zone could not be written (disk); nothing was changed",
    }
    return {str(c): _json(text[c], "Error") for c in (401, 429, *codes)}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
# What the schema promises is accepted; the API accepts more (U-labels, ISO times...).
_LABEL_RE = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = {
    "type": "string",
    "maxLength": 253,
    "pattern": f"^{_LABEL_RE}(?:\\.{_LABEL_RE})*\\.?$",
    "description": "a domain name; internationalised names (U-labels) are accepted too"
    " and converted to A-labels; no wildcards (use subdomains)",
}
_NO_NUL = "^[^\\u0000]*$"
_BEFORE = {"type": "integer", "minimum": 1, "maximum": (1 << 63) - 1}
_TEXT = {"type": "string", "maxLength": 253, "pattern": _NO_NUL}

_QTYPES = [
    "A",
    "AAAA",
    "CNAME",
    "MX",
    "TXT",
    "NS",
    "SOA",
    "PTR",
    "SRV",
    "CAA",
    "HTTPS",
    "SVCB",
    "DS",
    "DNSKEY",
    "ANY",
]

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
    },
    "RuleInput": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": _NAME,
            "action": {"type": "string", "enum": ["block", "allow"], "default": "block"},
            "subdomains": {"type": "boolean", "default": False},
            "comment": {"type": "string", "maxLength": 500, "default": ""},
            "groups": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "[[group]] names; none: everyone",
            },
        },
    },
    "Rule": {
        "type": "object",
        "required": ["id", "name", "action", "subdomains", "comment", "groups", "created", "actor"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "action": {"type": "string", "enum": ["block", "allow"]},
            "subdomains": {"type": "boolean"},
            "comment": {"type": "string"},
            "groups": {"type": "array", "items": {"type": "string"}},
            "created": {"type": "number", "description": "UNIX time"},
            "actor": {"type": "string", "description": "user:NAME, key:NAME or cli:USER"},
        },
    },
    "RuleList": {
        "type": "object",
        "required": ["rules", "total", "limit", "offset"],
        "properties": {
            "rules": {"type": "array", "items": _ref("Rule")},
            "total": {"type": "integer", "description": "rules matching q"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    },
    "Removed": {
        "type": "object",
        "required": ["removed"],
        "properties": {"removed": {"type": "array", "items": _ref("Rule")}},
    },
    "QueryRow": {
        "type": "object",
        "required": ["id", "ts", "client", "qname", "qtype"],
        "properties": {
            "id": {"type": "integer"},
            "ts": {"type": "number", "description": "UNIX time"},
            "client": {"type": "string"},
            "qname": {"type": "string"},
            "qtype": {"type": "integer"},
            "rcode": {"type": "integer", "description": "-1: dropped"},
            "answer": {"type": "string", "nullable": True},
            "cache_hit": {"type": "integer"},
            "upstream": {"type": "string", "nullable": True},
            "policy_zone": {"type": "string", "nullable": True},
            "policy_rule": {"type": "string", "nullable": True},
            "policy_action": {"type": "string", "nullable": True},
            "outcome": {"type": "string", "nullable": True},
            "reason": {"type": "string", "nullable": True},
            "client_group": {
                "type": "string",
                "description": "the client's [[group]] names, comma-joined",
            },
            "device": {
                "type": "string",
                "description": "the device's name (DoH path, DoT/DoQ server name, EDNS client"
                " MAC aa:bb:cc:dd:ee:ff); empty for a client known by its address only",
            },
            "node": {
                "type": "string",
                "description": "the [server] node_name of the node that logged it (empty:"
                " logged before nodes were named)",
            },
        },
    },
    "QueryList": {
        "type": "object",
        "required": ["queries", "next_before"],
        "properties": {
            "queries": {"type": "array", "items": _ref("QueryRow")},
            "next_before": {
                "type": "integer",
                "nullable": True,
                "description": "pass as before= for the next page",
            },
        },
    },
    "Explain": {
        "type": "object",
        "required": ["name", "qtype", "client", "groups", "match"],
        "properties": {
            "name": {"type": "string"},
            "qtype": {"type": "string"},
            "client": {"type": "string", "nullable": True},
            "groups": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the client's [[group]]s: their zones were applied with the rest",
            },
            "match": {
                "type": "object",
                "nullable": True,
                "description": "the rule that applies (null: none, the name resolves)",
                "required": ["action", "rule", "zone", "category", "groups"],
                "properties": {
                    "action": {"type": "string"},
                    "rule": {"type": "string"},
                    "zone": {"type": "string"},
                    "category": {"type": "string"},
                    "groups": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "the zone's [[group]]s ([]: it applies to everyone)",
                    },
                },
            },
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "time", "actor", "address", "action", "target", "detail"],
        "properties": {
            "id": {"type": "integer"},
            "time": {"type": "number"},
            "actor": {"type": "string"},
            "address": {"type": "string", "description": 'client address ("" from the CLI)'},
            "action": {"type": "string", "description": "rule.add, rule.remove, ..."},
            "target": {"type": "string"},
            "detail": {"type": "object"},
        },
    },
    "AuditList": {
        "type": "object",
        "required": ["entries", "next_before", "now"],
        "properties": {
            "entries": {"type": "array", "items": _ref("AuditEntry")},
            "next_before": {"type": "integer", "nullable": True},
            "now": {"type": "number"},
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/rules": {
        "get": {
            "summary": "local rules, by name (search and paging)",
            "security": _AUTH,
            "parameters": [
                _q("q", _TEXT, "substring of the name or the comment"),
                _q("limit", {**_LIMIT, "default": 100}, "rules per page"),
                _q(
                    "offset",
                    {"type": "integer", "minimum": 0, "maximum": 1 << 31, "default": 0},
                    "rules to skip",
                ),
            ],
            "responses": {"200": _json("the rules", "RuleList"), **_errors(422)},
        },
        "post": {
            "summary": "block or allow a name (replaces the rule of the same name and groups)",
            "description": "In force on every worker when the answer comes (rules.mamori."
            " zone, first in policy order). Recorded in the audit log. Session callers send"
            " X-CSRF-Token.",
            "security": _AUTH,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("RuleInput")}},
            },
            "responses": {
                "201": _json("the rule, new", "Rule"),
                "200": _json("the rule, replacing the one of the same name and groups", "Rule"),
                **_errors(400, 403, 413, 415, 422, 503),
            },
        },
    },
    "/api/v1/rules/{name}": {
        "delete": {
            "summary": "remove the rules of a name (all groups, or ?groups=a,b only)",
            "security": _AUTH,
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": _NAME},
                _q(
                    "groups",
                    {"type": "string"},
                    "comma-separated group names: only the rule"
                    " of exactly these groups (empty: the rule for everyone)",
                ),
            ],
            "responses": {
                "200": _json("the rules removed", "Removed"),
                **_errors(403, 404, 422, 503),
            },
        },
    },
    "/api/v1/queries": {
        "get": {
            "summary": "search the query log (newest first), as the console's query log",
            "security": _AUTH,
            "parameters": [
                _q(
                    "client",
                    {"type": "string", "maxLength": 64, "pattern": _NO_NUL},
                    "client address",
                ),
                _q("name", _TEXT, "substring of the query name"),
                _q(
                    "action",
                    {"type": "string", "maxLength": 32, "pattern": _NO_NUL},
                    "blocked, allowed, or a policy action (nxdomain, passthru...)",
                ),
                _q("zone", _TEXT, "policy zone"),
                _q(
                    "device",
                    {"type": "string", "maxLength": 64, "pattern": _NO_NUL},
                    "device name (exact): a DoH path or DoT/DoQ name, or a MAC address",
                ),
                _q(
                    "node",
                    {"type": "string", "maxLength": 64, "pattern": _NO_NUL},
                    "the [server] node_name that logged it (exact)",
                ),
                _q(
                    "since",
                    {"type": "string", "pattern": "^(-?[0-9]{1,12})?$"},
                    "epoch seconds or -seconds (relative); an ISO 8601 time or 1w2d3h (ago)"
                    " is accepted too",
                ),
                _q("before", _BEFORE, "only ids below this (next_before of the last page)"),
                _q("limit", {**_LIMIT, "default": 50}, "rows"),
            ],
            "responses": {"200": _json("query log rows", "QueryList"), **_errors(422, 503)},
        },
    },
    "/api/v1/explain": {
        "get": {
            "summary": "which rule applies to a name (the console's explain)",
            "security": _AUTH,
            "parameters": [
                {**_q("name", _NAME, "the query name"), "required": True},
                _q(
                    "qtype",
                    {"type": "string", "enum": _QTYPES, "default": "A"},
                    "query type (any other mnemonic or TYPEnnn is accepted too)",
                ),
                _q(
                    "client",
                    {
                        "oneOf": [
                            {"type": "string", "format": "ipv4"},
                            {"type": "string", "format": "ipv6"},
                        ]
                    },
                    "client address (Client-IP rules; none: QNAME rules only)",
                ),
            ],
            "responses": {"200": _json("the verdict", "Explain"), **_errors(409, 422)},
        },
    },
    "/api/v1/audit": {
        "get": {
            "summary": "the audit log (newest first): who changed what, when, from where",
            "security": _AUTH,
            "parameters": [
                _q("q", _TEXT, "substring of the target, action or actor"),
                _q("before", _BEFORE, "only ids below this"),
                _q("limit", {**_LIMIT, "default": 100}, "entries"),
            ],
            "responses": {"200": _json("audit entries", "AuditList"), **_errors(422)},
        },
    },
}
