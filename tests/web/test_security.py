"""The web side's defences over real HTTP (uvicorn on 127.0.0.1; a second client address
127.0.0.2): security headers, login and API key throttling (429 + Retry-After, one log
line per lockout, counted on /metrics), server-side sessions (logout, password change,
expiry), the Secure cookie over HTTPS, CSRF on every state-changing route, the block
page's bounded report form and its CSP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import logging
import re
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from mamori import config as cfgmod
from mamori.web.app import keys_path
from mamori.web.blockpage import BlockPage
from mamori.web.keys import KeyStore
from mamori.web.security import Limiter, client_key
from mamori.web.server import EmbeddedServer
from tests.support.console import PASSWORD, ConsoleServer, write_config
from tests.support.net import free_port

NEEDED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def call(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One HTTP request from *source* (a loopback address): status, headers (lower-case
    names; repeated ones joined by newlines), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        r = conn.getresponse()
        out: dict[str, str] = {}
        for k, v in r.getheaders():
            out[k.lower()] = out[k.lower()] + "\n" + v if k.lower() in out else v
        return r.status, out, r.read()
    finally:
        conn.close()


class Login:
    """A login conversation from one client address, cookies kept by hand."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port, self.source, self.cookie = port, source, ""

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        h = {"Cookie": self.cookie} if self.cookie else {}
        status, hdrs, body = call(self.port, "GET", path, headers=h, source=self.source)
        self._keep(hdrs)
        return status, hdrs, body.decode()

    def _keep(self, hdrs: dict[str, str]) -> None:
        for line in hdrs.get("set-cookie", "").split("\n"):
            if line.startswith("mamori_session="):
                value = line.split(";")[0]
                self.cookie = "" if value == "mamori_session=null" else value

    def csrf(self) -> str:
        _s, _h, page = self.get("/login")
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert m, page
        return m.group(1)

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(fields).encode()
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.cookie:
            h["Cookie"] = self.cookie
        status, hdrs, out = call(self.port, "POST", path, body, h, self.source)
        self._keep(hdrs)
        return status, hdrs, out.decode()

    def login(self, user: str = "admin", password: str = PASSWORD) -> tuple[int, dict[str, str]]:
        status, hdrs, _b = self.post(
            "/login", {"csrf": self.csrf(), "user": user, "password": password, "next": "/"}
        )
        return status, hdrs

    def logged_in(self) -> bool:
        status, _h, _b = self.get("/")
        return status == 200


def metric(port: int, name: str, labels: str = "") -> float:
    _s, _h, body = call(port, "GET", "/metrics")
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", body.decode(), re.M)
    assert m, body.decode()[-2000:]
    return float(m.group(1))


# ------------------------------------------------------------------ headers
def test_console_and_api_answers_carry_the_security_headers(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        c = Login(srv.port)
        assert c.login()[0] == 303
        for path in ("/login", "/", "/queries", "/api/v1/stats", "/openapi.json",
                     "/pdns/query/example.test", "/no-such-page"):  # fmt: skip
            _status, h, _body = c.get(path)
            for k, v in NEEDED.items():
                assert h.get(k) == v, (path, k, h)
            csp = h["content-security-policy"]
            assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp, csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert h["cache-control"] == "no-store", (path, h)
        _s, h, _b = c.get("/static/console.css")  # static files may be cached
        assert "no-store" not in h.get("cache-control", "")


def test_no_inline_script_or_handler_in_any_console_template() -> None:
    """What the CSP forbids (script-src 'self', style-src 'self') is nowhere in the
    console's templates; JSON data blocks are not scripts."""
    root = Path(__file__).resolve().parents[2] / "src/mamori/web/templates"
    for t in root.glob("*.html"):
        if t.name == "blocked.html":  # the block page: its own CSP (hash of its style)
            continue
        text = t.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert 'src="' in tag or 'type="application/json"' in tag, (t.name, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), t.name
        assert not re.search(r"\sstyle\s*=|<style", text), t.name
        assert "javascript:" not in text, t.name


# ------------------------------------------------------------------ login throttling
def test_twenty_wrong_passwords_in_a_minute_are_throttled_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Defaults: 10 failures per address; a spray over 20 user names from one address
    gets 429 + Retry-After from the 11th on, the right password too; one log line;
    another address is not affected."""
    cfg = write_config(tmp_path)
    caplog.set_level(logging.WARNING, logger="mamori.web.security")
    with ConsoleServer(cfg) as srv:
        c = Login(srv.port)
        statuses = []
        for i in range(20):
            status, hdrs = c.login(f"user{i}", "wrong password")
            statuses.append(status)
            if status == 429:
                assert 1 <= int(hdrs["retry-after"]) <= 300
        assert statuses == [401] * 10 + [429] * 10, statuses
        assert c.login()[0] == 429  # locked: the right password is not even checked
        lines = [r.getMessage() for r in caplog.records if "refused for" in r.getMessage()]
        assert lines == [
            "console: logins from 127.0.0.1 refused for 300 s: 10 failed logins within 60 s"
        ], lines
        other = Login(srv.port, "127.0.0.2")
        assert other.login()[0] == 303 and other.logged_in()
        assert metric(srv.port, "mamori_web_login_failures_total") == 10
        assert metric(srv.port, "mamori_web_lockouts_total", '{kind="login_address"}') == 1
        assert metric(srv.port, "mamori_web_throttled_total", '{kind="login"}') == 11


def test_a_user_name_is_locked_from_every_address_after_five_failures(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        a, b = Login(srv.port, "127.0.0.1"), Login(srv.port, "127.0.0.2")
        assert [a.login("admin", "guess")[0] for _ in range(5)] == [401] * 5
        status, hdrs = b.login()  # the right password, from elsewhere
        assert status == 429 and int(hdrs["retry-after"]) > 0
        assert metric(srv.port, "mamori_web_lockouts_total", '{kind="login_user"}') == 1


def test_a_successful_login_does_not_reset_the_address_count(tmp_path: Path) -> None:
    """An attacker who owns one account cannot spray others by logging in in between."""
    cfg = write_config(tmp_path, "[web]\nlogin_failures_per_address = 4\n")
    with ConsoleServer(cfg) as srv:
        c = Login(srv.port)
        assert [c.login(f"u{i}", "x")[0] for i in range(3)] == [401] * 3
        assert c.login()[0] == 303
        assert c.login("u9", "x")[0] == 401  # the fourth failure: locked now
        assert c.login()[0] == 429


def test_login_body_is_bounded(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        c = Login(srv.port)
        status, _h, _b = c.post("/login", {"csrf": c.csrf(), "user": "a" * 20000})
        assert status == 413


# ------------------------------------------------------------------ API keys
def test_a_storm_of_wrong_api_keys_from_one_address_is_throttled(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, '[web]\nmetrics_token = "t0ken-for-metrics"\nmetrics_allow = ["127.0.0.1/32"]\n'
    )
    keys = KeyStore(keys_path(cfg))
    good = keys.add("reader", rate=1000, burst=1000, scope="read")
    keys.close()
    with ConsoleServer(cfg) as srv:
        got = [call(srv.port, "GET", "/api/v1/stats", headers={"X-API-Key": f"mk_wrong{i}"})[0]
               for i in range(19)]  # fmt: skip
        assert got == [401] * 19
        # a wrong /metrics token counts too (401 now; 403 stays for no token at all)
        bad = {"Authorization": "Bearer nope"}
        assert call(srv.port, "GET", "/metrics", headers=bad, source="127.0.0.2")[0] == 401
        assert call(srv.port, "GET", "/metrics", source="127.0.0.2")[0] == 403
        # the 20th failure from 127.0.0.1: still answered, and the lockout begins
        assert call(srv.port, "GET", "/pdns/query/x.test", headers={"X-API-Key": "no"})[0] == 401
        status, h, _b = call(srv.port, "GET", "/api/v1/stats", headers={"X-API-Key": good})
        assert status == 429 and int(h["retry-after"]) > 0  # even a good key, for now
        assert call(srv.port, "GET", "/dnsdb/v2/rate_limit", headers={"X-API-Key": good})[0] == 429
        status, _h, _b = call(srv.port, "GET", "/api/v1/stats", headers={"X-API-Key": good},
                              source="127.0.0.2")  # fmt: skip
        assert status == 200
        assert metric(srv.port, "mamori_web_lockouts_total", '{kind="api_key_address"}') == 1
        assert metric(srv.port, "mamori_web_api_key_failures_total") == 21


# ------------------------------------------------------------------ sessions
def test_logout_ends_the_session_server_side(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        c = Login(srv.port)
        c.csrf()
        before = c.cookie
        assert c.login()[0] == 303 and c.logged_in()
        assert c.cookie != before  # a new session at login
        stolen = c.cookie
        _s, _h, page = c.get("/")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert token
        assert c.post("/logout", {"csrf": token.group(1)})[0] == 303
        replay = Login(srv.port)
        replay.cookie = stolen  # the cookie from before the logout, replayed
        assert not replay.logged_in()
        assert call(srv.port, "GET", "/api/v1/stats", headers={"Cookie": stolen})[0] == 401


def test_a_password_change_ends_the_users_sessions(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        c = Login(srv.port)
        assert c.login()[0] == 303 and c.logged_in()
        keys = KeyStore(keys_path(cfg))  # as `mamori users add admin` does
        keys.add_user("admin", "another long password")
        keys.close()
        assert not c.logged_in()


def test_sessions_expire_when_idle_and_when_old(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.sqlite")
    keys.add_user("admin", PASSWORD)
    t0 = 1_000_000.0
    sid = keys.open_session("admin", 43200, now=t0)
    assert keys.session_user(sid, 3600, 43200, now=t0 + 3000) == "admin"
    assert keys.session_user(sid, 3600, 43200, now=t0 + 6000) == "admin"  # seen at +3000
    assert keys.session_user(sid, 3600, 43200, now=t0 + 9700) is None  # idle 3700 s
    assert keys.session_user(sid, 3600, 43200, now=t0 + 6100) is None  # and forgotten
    sid = keys.open_session("admin", 43200, now=t0)
    for t in range(0, 43200, 3000):  # busy all along, but too old at the end
        assert keys.session_user(sid, 3600, 43200, now=t0 + t) == "admin"
    assert keys.session_user(sid, 3600, 43200, now=t0 + 43300) is None
    assert keys.session_user("", 3600, 43200) is None
    keys.close()


def test_the_session_cookie_is_secure_over_https_only(tmp_path: Path) -> None:
    """Behind a TLS proxy on the same host (X-Forwarded-Proto: https, which uvicorn
    trusts from 127.0.0.1) the cookie gets Secure; over plain HTTP it cannot."""
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        _s, h, _b = call(srv.port, "GET", "/login", headers={"X-Forwarded-Proto": "https"})
        cookie = h["set-cookie"]
        assert "mamori_session=" in cookie and "; Secure" in cookie and "httponly" in cookie
        assert "samesite=strict" in cookie
        _s, h, _b = call(srv.port, "GET", "/login")
        assert "Secure" not in h["set-cookie"]


# ------------------------------------------------------------------ CSRF
def test_every_state_changing_route_refuses_a_session_without_the_csrf_token(
    tmp_path: Path,
) -> None:
    """Every POST/PUT/PATCH/DELETE route of the app (listed from the app itself, so a
    new route is covered), called with a logged-in session but no CSRF token, changes
    nothing: an error status, or (logout) a redirect that leaves the session alive."""
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        unsafe: list[tuple[str, str]] = []
        for route in srv.server.config.app.routes:
            for method in sorted(getattr(route, "methods", None) or ()):
                if method not in ("GET", "HEAD"):
                    path = re.sub(r"\{rid:int\}", "1", route.path)
                    unsafe.append((method, re.sub(r"\{[^}]+\}", "x", path)))
        assert len(unsafe) >= 15, unsafe
        c = Login(srv.port)
        assert c.login()[0] == 303
        for method, path in unsafe:
            for ctype, body in (("application/x-www-form-urlencoded", b"name=x&csrf="),
                                ("application/json", b'{"name": "x.test"}')):  # fmt: skip
                status, _h, out = call(srv.port, method, path, body,
                                       {"Cookie": c.cookie, "Content-Type": ctype})  # fmt: skip
                if path == "/logout":
                    assert status == 303 and c.logged_in()
                else:
                    assert 400 <= status < 500, (method, path, status, out[:200])
        assert c.logged_in()


# ------------------------------------------------------------------ block page
class BlockPageServer:
    def __init__(self, cfg: cfgmod.Config) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            BlockPage(cfg).app(), host="127.0.0.1", port=self.port, log_level="warning",
            access_log=False, lifespan="off", loop="none",
        )  # fmt: skip
        self.server = EmbeddedServer(config)
        self.server.embedded = True
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    def __enter__(self) -> BlockPageServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def test_block_page_has_a_script_free_csp_and_a_bounded_report_form(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with BlockPageServer(cfg) as srv:
        status, h, body = call(srv.port, "GET", "/", headers={"Host": "bad.example.test"})
        assert status == 403
        for k, v in NEEDED.items():
            assert h[k] == v
        csp = h["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        style = re.search(r"<style>(.*?)</style>", body.decode(), re.S)
        assert style
        digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in csp  # the page's own style is allowed
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', body.decode())
        assert token
        form = {"name": "bad.example.test", "csrf": token.group(1), "comment": "x" * 17000}
        status, _h, _b = call(srv.port, "POST", "/report", urllib.parse.urlencode(form).encode(),
                              {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert status == 413
        form["comment"] = "a mistake"
        status, _h, _b = call(srv.port, "POST", "/report", urllib.parse.urlencode(form).encode(),
                              {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert status == 303


# ------------------------------------------------------------------ the limiter
def test_limiter_window_slides_and_lockout_lasts() -> None:
    lim = Limiter(3, window=60, lockout=300)
    for t in (0, 10, 20):
        assert lim.begin("a", t) == 0
        assert lim.failed("a", t) == (t == 20)  # the third failure begins the lockout
    assert lim.begin("a", 30) == 290
    assert lim.begin("b", 30) == 0  # other keys are not affected
    assert lim.begin("a", 321) == 0  # lockout over, failures out of the window
    lim = Limiter(3, window=60, lockout=300)
    for t in (0, 50):
        lim.begin("a", t)
        lim.failed("a", t)
    assert lim.begin("a", 70) == 0  # the one at 0 slid out: under the limit again


def test_limiter_forgets_old_keys_beyond_its_bound() -> None:
    lim = Limiter(2, window=60, lockout=60, max_keys=100)
    for i in range(1000):
        lim.failed(f"k{i}", float(i), counted=False)
    assert len(lim.recent) <= 100


def test_ipv6_clients_are_counted_per_slash_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("not an address") == "not an address"
