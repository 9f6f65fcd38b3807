"""The console's and the APIs' defences that are not about one page: failed-login and
wrong-API-key throttling, server-side session checks, security headers.

- ``Limiter``: failures per key (a client address, a user name) in a sliding window;
  at ``limit`` failures the key is locked out for ``lockout`` seconds (HTTP 429 with
  ``Retry-After``). Bounded memory: at most ``max_keys`` keys are remembered.
- ``Guard``: the three limiters of ``[web]`` (logins per address, logins per user
  name, wrong API keys per address), the log line when a lockout begins (one per
  lockout, not per attempt) and the counters ``/metrics`` shows.
- ``ApiKeyThrottle`` (ASGI): a request that carries credentials (``X-API-Key`` or
  ``Authorization``) from an address locked out for wrong keys gets 429 without being
  looked at; a 401 answer to such a request counts as a failure of its address.
- ``SessionCheck`` (ASGI, inside Starlette's signed-cookie ``SessionMiddleware``): a
  session cookie names a server-side session (``KeyStore.session_user``); one that was
  logged out, ended by a password change, idle too long or too old is emptied, so
  every page and API sees no user.
- ``SecurityHeaders`` (ASGI): CSP without inline script, frame-ancestors 'none',
  nosniff, Referrer-Policy, X-Frame-Options, ``Cache-Control: no-store`` (but on the
  static files), and the ``Secure`` flag on cookies when the request came over HTTPS.

Addresses are counted per IPv4 address and per IPv6 /64 (what one host usually has).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mamori import config as cfgmod
from mamori.web.keys import KeyStore

log = logging.getLogger(__name__)

CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
CACHEABLE = ("/static/", "/favicon.ico")  # the rest: no-store (pages, API answers)
MAX_KEYS = 100_000


def client_key(address: str) -> str:
    """The key *address* is counted under: the address itself (IPv4), its /64 (IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))  # scope ids dropped
    return str(ip)


class Limiter:
    """At most *limit* failures per key in *window* seconds; then locked *lockout* seconds.

    ``limit`` 0 turns it off. Attempts under way count (``begin``), so that many
    attempts sent at once do not all get through before the first one fails.
    Thread-safe (the password check runs in a thread pool)."""

    def __init__(self, limit: int, window: float, lockout: float, max_keys: int = MAX_KEYS):
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self.max_keys = max_keys
        self.recent: dict[str, deque[float]] = {}
        self.until: dict[str, float] = {}
        self.lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self.recent.get(key)
        if q is None:
            if len(self.recent) >= self.max_keys:
                self._prune(now)
            q = self.recent[key] = deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def _prune(self, now: float) -> None:
        for k in [k for k, q in self.recent.items() if not q or q[-1] <= now - self.window]:
            del self.recent[k]
        for k in [k for k, t in self.until.items() if t <= now]:
            del self.until[k]
        while len(self.recent) >= self.max_keys:  # still full: forget the oldest keys
            del self.recent[next(iter(self.recent))]

    def retry_after(self, key: str, now: float) -> int:
        """Seconds until *key* may try again (0: now)."""
        if not self.limit:
            return 0
        with self.lock:
            until = self.until.get(key, 0.0)
            if until > now:
                return max(1, math.ceil(until - now))
            q = self._recent(key, now)
            if len(q) >= self.limit:
                return max(1, math.ceil(q[0] + self.window - now))
            return 0

    def begin(self, key: str, now: float) -> int:
        """An attempt starts: 0 and it counts as a failure until ``succeeded``; or the
        seconds to wait (the attempt is refused, not counted)."""
        wait = self.retry_after(key, now)
        if wait or not self.limit:
            return wait
        with self.lock:
            self._recent(key, now).append(now)
        return 0

    def failed(self, key: str, now: float, counted: bool = True) -> bool:
        """The attempt failed (*counted*: ``begin`` counted it already). True when this
        failure begins a lockout."""
        if not self.limit:
            return False
        with self.lock:
            q = self._recent(key, now)
            if not counted:
                q.append(now)
            if len(q) >= self.limit and self.until.get(key, 0.0) <= now:
                self.until[key] = now + self.lockout
                return True
            return False

    def succeeded(self, key: str, forget: bool) -> None:
        """The attempt succeeded: it is no failure; *forget*: nor are the earlier ones."""
        with self.lock:
            q = self.recent.get(key)
            if q is None:
                return
            if forget:
                del self.recent[key]
            elif q:
                q.pop()


class Guard:
    """``[web]``'s throttles and their counters (one per web app)."""

    def __init__(self, web: cfgmod.WebConfig) -> None:
        w, lock = web.login_failure_window, web.login_lockout
        self.by_address = Limiter(web.login_failures_per_address, w, lock)
        self.by_user = Limiter(web.login_failures_per_user, w, lock)
        self.keys = Limiter(web.api_key_failures_per_address, w, lock)
        self.login_failures = 0
        self.key_failures = 0
        self.lockouts = {"login_address": 0, "login_user": 0, "api_key_address": 0}
        self.throttled = {"login": 0, "api_key": 0}

    # ---------------------------------------------------------------- logins
    def login_begin(self, address: str, user: str, now: float | None = None) -> int:
        """0: check the password (the attempt counts until ``login_done``); else refuse
        it with 429 and this Retry-After (seconds)."""
        now = time.time() if now is None else now
        a, u = client_key(address), user.lower()
        wait = max(self.by_address.retry_after(a, now), self.by_user.retry_after(u, now))
        if wait:
            self.throttled["login"] += 1
            return wait
        self.by_address.begin(a, now)
        self.by_user.begin(u, now)
        return 0

    def login_done(self, address: str, user: str, ok: bool, now: float | None = None) -> None:
        """The password check of an attempt ``login_begin`` let through: a success
        forgets the user name's failures but not the address's (an address that tries
        many user names stays counted); a failure may begin a lockout (logged once)."""
        now = time.time() if now is None else now
        a, u = client_key(address), user.lower()
        if ok:
            self.by_address.succeeded(a, forget=False)
            self.by_user.succeeded(u, forget=True)
            return
        self.login_failures += 1
        if self.by_address.failed(a, now):
            self.lockouts["login_address"] += 1
            log.warning(
                "console: logins from %s refused for %g s: %d failed logins within %g s",
                a, self.by_address.lockout, self.by_address.limit, self.by_address.window,
            )  # fmt: skip
        if self.by_user.failed(u, now):
            self.lockouts["login_user"] += 1
            log.warning(
                "console: logins as user %r refused for %g s: %d failed logins within %g s"
                " (last from %s)",
                user[:64], self.by_user.lockout, self.by_user.limit, self.by_user.window, a,
            )  # fmt: skip

    # ---------------------------------------------------------------- API keys
    def key_wait(self, address: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        wait = self.keys.retry_after(client_key(address), now)
        if wait:
            self.throttled["api_key"] += 1
        return wait

    def key_failed(self, address: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        a = client_key(address)
        self.key_failures += 1
        if self.keys.failed(a, now, counted=False):
            self.lockouts["api_key_address"] += 1
            log.warning(
                "web: requests with credentials from %s refused for %g s:"
                " %d wrong API keys or tokens within %g s",
                a, self.keys.lockout, self.keys.limit, self.keys.window,
            )  # fmt: skip

    def collector(self) -> Collector:
        return _GuardCollector(self)


class _GuardCollector(Collector):
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Any]:
        g = self.guard
        c = CounterMetricFamily(
            "mamori_web_login_failures", "console logins refused: wrong user or password"
        )
        c.add_metric([], g.login_failures)
        yield c
        c = CounterMetricFamily(
            "mamori_web_api_key_failures",
            "requests refused 401 that carried an API key or token (wrong or unknown)",
        )
        c.add_metric([], g.key_failures)
        yield c
        c = CounterMetricFamily(
            "mamori_web_lockouts",
            "lockouts begun (too many failures in the window)",
            labels=["kind"],
        )
        for kind, n in g.lockouts.items():
            c.add_metric([kind], n)
        yield c
        c = CounterMetricFamily(
            "mamori_web_throttled", "requests answered 429 during a lockout", labels=["kind"]
        )
        for kind, n in g.throttled.items():
            c.add_metric([kind], n)
        yield c


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class ApiKeyThrottle:
    """Wrong API keys (or ``/metrics`` tokens) per client address (see the module doc)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        names = {k for k, _v in scope["headers"]}
        if b"x-api-key" not in names and b"authorization" not in names:
            await self.app(scope, receive, send)
            return
        address = _address(scope)
        wait = self.guard.key_wait(address)
        if wait:
            body = b'{"error": "too many wrong API keys from this address; try again later"}'
            await send({"type": "http.response.start", "status": 429, "headers": [
                (b"content-type", b"application/json"), (b"retry-after", str(wait).encode()),
                (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.guard.key_failed(address)
            await send(message)

        await self.app(scope, receive, watch)


class SessionCheck:
    """Empties a session cookie's session that is no longer alive server-side."""

    def __init__(self, app: ASGIApp, keys: KeyStore, web: cfgmod.WebConfig) -> None:
        self.app = app
        self.keys = keys
        self.idle = web.session_idle_timeout
        self.max_age = web.session_max_age

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session = scope.get("session") if scope["type"] == "http" else None
        if session and session.get("user") and not str(scope["path"]).startswith(CACHEABLE):
            sid = str(session.get("sid", ""))
            user = await run_in_threadpool(self.keys.session_user, sid, self.idle, self.max_age)
            if user is None or user != session.get("user"):
                session.clear()
        await self.app(scope, receive, send)


class SecurityHeaders:
    """The response headers every console and API answer carries (see the module doc)."""

    def __init__(self, app: ASGIApp, csp: str = CONSOLE_CSP) -> None:
        self.app = app
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        cacheable = path.startswith(CACHEABLE)
        https = scope.get("scheme") == "https"

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])]
                present = {k.lower() for k, _v in headers}
                if https:
                    headers = [(k, _secure(v) if k.lower() == b"set-cookie" else v)
                               for k, v in headers]  # fmt: skip
                headers.append((b"content-security-policy", self.csp))
                headers.extend(h for h in COMMON_HEADERS if h[0] not in present)
                if not cacheable:
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, add)


def _secure(cookie: bytes) -> bytes:
    return cookie if b"; secure" in cookie.lower() else cookie + b"; Secure"


async def small_form(request: Request, limit: int) -> dict[str, str] | None:
    """The request's URL-encoded form (the first value of each field), read up to
    *limit* bytes; None when the body is longer (the caller answers 413)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    fields: dict[str, str] = {}
    for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        fields.setdefault(k, v)
    return fields
