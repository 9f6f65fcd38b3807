"""Who may call the REST API (``/api/v1/``), and how its errors look.

Two ways in, as the issue tracker's users expect from Pi-hole and AdGuard Home:

- an API key (``mamori keys add NAME --scope read|admin``) in ``X-API-Key``
  (or ``Authorization: Bearer KEY``), rate limited per key as for the passive
  DNS APIs; ``read`` keys may only read, ``admin`` keys may also change;
- the console's session cookie; a request that changes something (any method
  but GET/HEAD) must then also carry the session's CSRF token in
  ``X-CSRF-Token`` (the console's pages put it in ``<meta name="csrf">``).

Errors are JSON: ``{"error": "what is wrong", "field": "name"}`` (``field``
only when one input field is at fault), with the HTTP status saying whose
fault it is (400/404/409/422 the request's, 401/403/429 the caller's).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from mamori.web.keys import KeyStore, Refused

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiError(Exception):
    """A request refused with *status*; *field*: the input field at fault (or None)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.retry_after = 0

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": str(self)}
        if self.field is not None:
            body["field"] = self.field
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
        return JSONResponse(body, self.status, headers=headers)


async def authorize(request: Request, keys: KeyStore) -> str:
    """The caller, as ``"key:NAME"`` or ``"user:NAME"`` (for the audit log).

    Raises ApiError 401 (no or unknown credentials), 403 (a key whose scope does
    not cover the request: ``read`` for GET/HEAD, ``admin`` for changes; or a
    session without the CSRF token on a change), 429 (key over its rate or
    quota; ``retry_after``).
    """
    h = request.headers
    key = h.get("x-api-key")
    if not key:
        scheme, _, value = h.get("authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip():
            key = value.strip()
    if key:
        need = "read" if request.method in SAFE_METHODS else "admin"
        try:
            name = await run_in_threadpool(keys.check, key, None, need)
        except Refused as e:
            err = ApiError(e.status, str(e))
            err.retry_after = e.retry_after
            raise err from None
        return f"key:{name}"
    session = request.scope.get("session")
    user = session.get("user") if session is not None else None
    if not user:
        raise ApiError(401, "log in to the console, or send an API key in X-API-Key")
    if request.method not in SAFE_METHODS:
        token = str(session.get("csrf", "")) if session is not None else ""
        given = h.get("x-csrf-token", "")
        if not token or not secrets.compare_digest(given, token):
            raise ApiError(403, "missing or wrong X-CSRF-Token (the console session's token)")
    return f"user:{user}"


def client_address(request: Request) -> str:
    """Where a request came from (the audit log's "from where")."""
    return request.client.host if request.client else ""


async def json_body(request: Request, limit: int = 1 << 20) -> dict[str, Any]:
    """The request's JSON object. Raises ApiError 415 (not JSON), 413 (over *limit*
    bytes), 400 (not a JSON object)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "send the body as application/json")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"body over {limit} bytes")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"body is not valid JSON: {e}") from None
    except RecursionError:  # nested deeper than the interpreter's recursion limit
        raise ApiError(400, "body is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "body must be a JSON object")
    return doc
