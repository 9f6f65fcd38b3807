"""The OpenAPI description of ``/api/v1/feeds`` and ``/api/v1/groups`` (the routes are
in ``settings_api.py``); ``web/openapi.py`` merges ``OPENAPI_PATHS``."""

from __future__ import annotations

from typing import Any

from mamori.config.feeds import CATEGORIES, FORMATS

_SEC: list[dict[str, list[str]]] = [{"apiKey": []}, {"authorization": []}]
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
}


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "bad request (not JSON, not an object, bad form)",
        401: "no or unknown API key, or no console session",
        403: "console session without its X-CSRF-Token on a change",
        404: "no such feed or group",
        409: "conflicts with the configuration (defined in the user's TOML, exists, in use)",
        413: "body or uploaded file too large",
        415: "send application/json (or multipart/form-data for a feed)",
        422: "a value is invalid: field names it",
        429: "API key over its rate or quota (Retry-After)",
    }
    return {
        str(c): {
            "description": why[c],
            "content": {"application/json": {"schema": _ERROR}},
        }
        for c in (401, 403, 429, *codes)
    }


_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}
_STRS = {"type": "array", "items": {"type": "string"}}
_FEED_FIELDS: dict[str, Any] = {
    "name": _NAME,
    "url": {"type": "string", "description": "http(s) URL (or upload the file)"},
    "format": {"type": "string", "enum": list(FORMATS)},
    "category": {"type": "string", "enum": list(CATEGORIES)},
    "refresh": {"type": "integer", "minimum": 60, "maximum": 604800},
    "enabled": {"type": "boolean"},
    "action": {"type": "string", "description": "nxdomain, nodata or cname:TARGET"},
    "groups": _STRS,
    "max_bad": {"type": "number", "minimum": 0, "maximum": 1},
    "delist_after": {"type": "integer", "minimum": 0},
    "columns": _STRS,
}
_FEED_IN = {
    "type": "object",
    "properties": {**_FEED_FIELDS, "content": {"type": "string", "description": "the file"}},
    "additionalProperties": False,
}
_FEED_OUT = {
    "type": "object",
    "properties": {
        **_FEED_FIELDS,
        "url": {"type": "string", "nullable": True},
        "path": {"type": "string", "nullable": True},
        "enabled_from_console": {"type": "boolean", "nullable": True},
        "refresh_error": {"type": "string"},
        "applied": {"type": "boolean", "description": "in force now (after a reload)"},
        "uploaded": {"type": "boolean"},
        "zone": {"type": "string"},
        "origin": {"type": "string", "enum": ["toml", "console"]},
        "defined_at": {"type": "string"},
        "entries": {"type": "integer"},
        "refreshing": {"type": "boolean"},
        "last_good_update": {"type": "integer", "nullable": True},
        "last_update": {
            "type": "object",
            "nullable": True,
            "properties": {
                "time": {"type": "integer"},
                "ok": {"type": "boolean"},
                "source": {"type": "string"},
                "summary": {"type": "string"},
                "why": {"type": "string"},
                "entries": {"type": "integer"},
                "rejected": {"type": "integer"},
            },
        },
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "line": {"type": "integer"},
                    "text": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}
_GROUP_IN = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "clients": _STRS,
        "client_ids": _STRS,
        "query_log_days": {"type": "integer", "minimum": 0, "maximum": 36500},
    },
    "additionalProperties": False,
}
_GROUP_OUT = {
    "type": "object",
    "properties": {
        **_GROUP_IN["properties"],  # type: ignore[dict-item]
        "query_log_days": {"type": "integer", "description": "-1: [store] query_log_days"},
        "applied": {"type": "boolean", "description": "in force now (after a reload)"},
        "zones": _STRS,
        "feeds": _STRS,
        "datasets": _STRS,
        "origin": {"type": "string", "enum": ["toml", "console"]},
        "defined_at": {"type": "string"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_name(what: str) -> list[dict[str, Any]]:
    return [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
             "description": what}]  # fmt: skip


_FEED_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _FEED_IN},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    **{k: {"type": "string"} for k in _FEED_FIELDS},
                    "file": {"type": "string", "format": "binary"},
                },
            }
        },
    },
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/feeds": {
        "get": {
            "summary": "the feeds in force, where each is defined, its last update",
            "security": _SEC,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"feeds": {"type": "array", "items": _FEED_OUT}},
                    },
                    "the feeds",
                ),
                **_errors(),
            },
        },
        "post": {
            "summary": "add a feed by URL, or by upload (content, or multipart file)",
            "description": "Kept in <store dir>/console.toml; the user's TOML is not changed.",
            "security": _SEC,
            "requestBody": _FEED_BODY,
            "responses": {
                "201": _json(_FEED_OUT, "added, and in force (applied) after a reload"),
                **_errors(400, 409, 413, 415, 422),
            },
        },
    },
    "/api/v1/feeds/{name}": {
        "parameters": _path_name("the feed's name"),
        "get": {
            "summary": "one feed, its last update and rejected lines",
            "security": _SEC,
            "responses": {"200": _json(_FEED_OUT, "the feed"), **_errors(404)},
        },
        "patch": {
            "summary": "change a feed (one of the TOML file's: only enabled)",
            "security": _SEC,
            "requestBody": _FEED_BODY,
            "responses": {
                "200": _json(_FEED_OUT, "changed"),
                **_errors(400, 404, 409, 413, 415, 422),
            },
        },
        "delete": {
            "summary": "remove a feed added from the console (409 for the TOML file's)",
            "security": _SEC,
            "responses": {"204": {"description": "removed"}, **_errors(404, 409)},
        },
    },
    "/api/v1/feeds/{name}/refresh": {
        "parameters": _path_name("the feed's name"),
        "post": {
            "summary": "update the feed now (its result then in GET /api/v1/feeds/{name})",
            "security": _SEC,
            "responses": {
                "202": _json({"type": "object"}, "the update started"),
                **_errors(404, 409),
            },
        },
    },
    "/api/v1/groups": {
        "get": {
            "summary": "the client groups in force, and the zones and feeds applying to each",
            "security": _SEC,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"groups": {"type": "array", "items": _GROUP_OUT}},
                    },
                    "the groups",
                ),
                **_errors(),
            },
        },
        "post": {
            "summary": "add a client group",
            "security": _SEC,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _GROUP_IN}},
            },
            "responses": {
                "201": _json(_GROUP_OUT, "added"),
                **_errors(400, 409, 413, 415, 422),
            },
        },
    },
    "/api/v1/groups/{name}": {
        "parameters": _path_name("the group's name"),
        "get": {
            "summary": "one client group",
            "security": _SEC,
            "responses": {"200": _json(_GROUP_OUT, "the group"), **_errors(404)},
        },
        "put": {
            "summary": "replace a client group added from the console",
            "security": _SEC,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _GROUP_IN}},
            },
            "responses": {
                "200": _json(_GROUP_OUT, "replaced"),
                **_errors(400, 404, 409, 413, 415, 422),
            },
        },
        "delete": {
            "summary": "remove a client group added from the console",
            "security": _SEC,
            "responses": {"204": {"description": "removed"}, **_errors(404, 409)},
        },
    },
}
