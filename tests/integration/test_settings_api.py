"""Feeds and groups edited through the REST API and the console of a real `mamori serve`:
enforced by DNS within seconds, kept in <store dir>/console.toml, the user's TOML
byte for byte unchanged, every change audited, bad input refused naming the field."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mamori.store.audit import AuditLog
from mamori.web.keys import KeyStore
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.feedserver import FeedServer
from tests.support.mamori_proc import MamoriProcess, rcode_text
from tests.support.net import free_port
from tests.support.wait import until
from tests.support.webclient import WebClient, multipart

pytestmark = pytest.mark.integration

USER_TOML_EXTRA = """
# My own settings: mamori must keep this comment, and this file, as written.
[web]
enabled = true
listen = "127.0.0.1:{web}"

[[group]]   # the office
name = "office"
clients = ["10.1.0.0/16"]

[[feed]]
name = "mine-toml"   # a local list of my own
path = "{path}"
format = "domains"
"""


# one bad line (under max_bad's 20%): listed with its number
UPLOAD = "www.example.test\nnot a domain!\nalias.example.test\n" + "".join(
    f"a{i}.example.test\n" for i in range(4)
)


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _serve(tmp: Path, upstream: AuthServer, extra: str = "") -> tuple[MamoriProcess, WebClient]:
    web = free_port()
    (tmp / "toml-list.txt").write_text("mx1.example.test\n")
    keys = KeyStore(tmp / "keys.sqlite")
    key = keys.add("test", rate=1000, burst=1000, scope="admin")
    keys.add_user("admin", "a long test password")
    keys.close()
    text = USER_TOML_EXTRA.format(web=web, path=tmp / "toml-list.txt") + extra
    m = MamoriProcess(tmp, [f"127.0.0.1:{upstream.port}"], extra=text).start()
    assert until(lambda: f"console: http://127.0.0.1:{web}/" in m.stderr()), m.stderr()
    return m, WebClient(f"http://127.0.0.1:{web}", key)


def _rcode(m: MamoriProcess, name: str) -> str:
    return rcode_text(m.query(name))


def _check(conf: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "check", "--config", str(conf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_feeds_from_the_api(tmp_path: Path, upstream: AuthServer) -> None:
    m, api = _serve(tmp_path, upstream)
    toml = m.config.read_bytes()
    overlay = tmp_path / "console.toml"
    try:
        assert until(lambda: _rcode(m, "mx1.example.test") == "NXDOMAIN"), m.stderr()
        assert _rcode(m, "www.example.test") == "NOERROR"

        # add a feed by upload (JSON content): enforced within seconds
        r = api.request("POST", "/api/v1/feeds", json_body={
            "name": "uploaded", "format": "domains", "category": "malware",
            "content": UPLOAD})  # fmt: skip
        assert r.status == 201, r
        assert r.json()["origin"] == "console" and r.json()["applied"] is True
        assert until(lambda: _rcode(m, "www.example.test") == "NXDOMAIN", 10), m.stderr()
        assert m.config.read_bytes() == toml
        assert '[[feed]]\nname = "uploaded"' in overlay.read_text()
        stored = tmp_path / "feeds" / "uploads" / "uploaded.txt"
        assert stored.read_text() == UPLOAD

        # its last update, with the rejected line and its number
        def updated() -> dict[str, object]:
            got: dict[str, object] = api.get("/api/v1/feeds/uploaded").json()
            return got

        assert until(lambda: updated()["last_update"] is not None)
        feed = updated()
        assert feed["entries"] == 6 and feed["category"] == "malware"
        assert feed["last_update"]["ok"] is True  # type: ignore[index]
        assert feed["rejected"][0]["line"] == 2  # type: ignore[index]
        assert feed["rejected"][0]["text"] == "not a domain!"  # type: ignore[index]
        listing = {f["name"]: f for f in api.get("/api/v1/feeds").json()["feeds"]}
        assert listing["mine-toml"]["origin"] == "toml"
        assert re.fullmatch(rf"{re.escape(str(m.config))}:\d+", listing["mine-toml"]["defined_at"])

        # disable, enable (the uploaded feed)
        r = api.request("PATCH", "/api/v1/feeds/uploaded", json_body={"enabled": False})
        assert r.status == 200 and r.json()["enabled"] is False, r
        # the reply comes after the reload; the workers map the new policy just after
        assert until(lambda: _rcode(m, "www.example.test") == "NOERROR", 10), m.stderr()
        r = api.request("PATCH", "/api/v1/feeds/uploaded", json_body={"enabled": True})
        assert r.status == 200, r
        assert until(lambda: _rcode(m, "www.example.test") == "NXDOMAIN", 10), m.stderr()

        # the user's own feed: on/off from the console (an override), not changed or removed
        r = api.request("PATCH", "/api/v1/feeds/mine-toml", json_body={"enabled": False})
        assert r.status == 200 and r.json()["enabled_from_console"] is False, r
        assert until(lambda: _rcode(m, "mx1.example.test") == "NOERROR", 5), m.stderr()
        r = api.request("PATCH", "/api/v1/feeds/mine-toml", json_body={"category": "spam"})
        assert r.status == 409 and r.json()["field"] == "category", r
        assert api.request("DELETE", "/api/v1/feeds/mine-toml").status == 409
        out = _check(m.config)
        assert "feed:      mine-toml domains custom (disabled) (disabled from the console)" in out
        assert f"feed:      uploaded domains malware, from {overlay}:" in out
        r = api.request("PATCH", "/api/v1/feeds/mine-toml", json_body={"enabled": True})
        assert r.status == 200, r
        assert "override" not in overlay.read_text()  # as the file says: no override left
        assert until(lambda: _rcode(m, "mx1.example.test") == "NXDOMAIN", 5), m.stderr()

        # bad input: 422 naming the field, nothing written
        before = overlay.read_bytes()
        for body, field in [
            ({"name": "x", "format": "nope", "content": "a.test\n"}, "format"),
            ({"name": "Bad Name", "format": "domains", "content": "a.test\n"}, "name"),
            ({"name": "x", "format": "domains", "url": "ftp://a/b"}, "url"),
            ({"name": "x", "format": "domains", "url": "http://a/", "refresh": 5}, "refresh"),
            ({"name": "x", "format": "domains", "url": "http://a/", "colour": "red"}, "colour"),
            ({"name": "x", "format": "domains", "url": "http://a/", "groups": ["nope"]}, "groups"),
            ({"name": "x", "format": "domains"}, "url"),
        ]:
            r = api.request("POST", "/api/v1/feeds", json_body=body)
            assert r.status == 422 and r.json()["field"] == field, (body, r)
        r = api.request("PATCH", "/api/v1/feeds/uploaded", json_body={"enabled": "yes"})
        assert r.status == 422 and r.json()["field"] == "enabled", r
        r = api.request("POST", "/api/v1/feeds", json_body={
            "name": "mine-toml", "format": "domains", "url": "http://a/"})  # fmt: skip
        assert r.status == 409, r
        assert api.request("GET", "/api/v1/feeds/nope").status == 404
        r = api.request("POST", "/api/v1/feeds", b"[]", "application/json")
        assert r.status == 400, r
        assert overlay.read_bytes() == before
        assert not (tmp_path / "feeds" / "uploads" / "x.txt").exists()

        # auth: no key, a wrong key, a session without its CSRF token
        anon = WebClient(api.base)
        assert anon.get("/api/v1/feeds").status == 401
        assert WebClient(api.base, "wrong").get("/api/v1/feeds").status == 401
        anon.login("admin", "a long test password")
        assert anon.get("/api/v1/feeds").status == 200  # a session reads
        r = anon.request("PATCH", "/api/v1/feeds/uploaded", json_body={"enabled": False})
        assert r.status == 403, r
        r = anon.request("PATCH", "/api/v1/feeds/uploaded", json_body={"enabled": True},
                         headers={"X-CSRF-Token": anon.csrf})  # fmt: skip
        assert r.status == 200, r

        # a new file for it: updated at once
        r = api.request("PATCH", "/api/v1/feeds/uploaded", json_body={
            "content": "short.example.test\n"})  # fmt: skip
        assert r.status == 200, r
        assert until(lambda: _rcode(m, "short.example.test") == "NXDOMAIN", 10), m.stderr()
        assert _rcode(m, "www.example.test") == "NOERROR"
        assert stored.read_text() == "short.example.test\n"

        # remove: the upload goes too, the name resolves again
        assert api.request("DELETE", "/api/v1/feeds/uploaded").status == 204
        assert not stored.exists()
        assert until(lambda: _rcode(m, "short.example.test") == "NOERROR", 5), m.stderr()
        feeds_dir = tmp_path / "feeds"
        assert not (feeds_dir / "uploaded.rpz").exists()
        assert not (feeds_dir / "uploaded.entries").exists()
        # added again under the same name: it starts empty (the review found the old
        # list enforced, its entries counted, until the next refresh)
        r = api.request("POST", "/api/v1/feeds", json_body={
            "name": "uploaded", "format": "domains", "content": "tcponly.example.test\n",
            "category": "phishing", "enabled": False})  # fmt: skip
        assert r.status == 201, r
        assert api.request("GET", "/api/v1/feeds/uploaded").json()["entries"] in (0, None)
        assert _rcode(m, "tcponly.example.test") == "NOERROR"
        r = api.request("PATCH", "/api/v1/feeds/uploaded", json_body={"enabled": True})
        assert r.status == 200, r
        assert until(lambda: _rcode(m, "tcponly.example.test") == "NXDOMAIN", 10), m.stderr()
        assert _rcode(m, "short.example.test") == "NOERROR"
        assert api.request("GET", "/api/v1/feeds/uploaded").json()["entries"] == 1
        # explain knows the category of a feed added from the console (was "")
        match = api.request("GET", "/api/v1/explain?name=tcponly.example.test").json()["match"]
        assert match["zone"] == "uploaded.feeds.mamori." and match["category"] == "phishing"
        metrics = WebClient(api.base).get("/metrics").text
        assert 'mamori_feed_entries{feed="uploaded"} 1.0' in metrics
        assert api.request("DELETE", "/api/v1/feeds/uploaded").status == 204
        assert m.config.read_bytes() == toml
    finally:
        assert m.stop() == 0, m.stderr()
    audit = AuditLog(tmp_path / "audit.sqlite")
    try:
        done = [(e.actor, e.action, e.target) for e in reversed(audit.entries())]
    finally:
        audit.close()
    assert done == [
        ("key:test", "feed.add", "uploaded"),
        ("key:test", "feed.update", "uploaded"),
        ("key:test", "feed.update", "uploaded"),
        ("key:test", "feed.update", "mine-toml"),
        ("key:test", "feed.update", "mine-toml"),
        ("user:admin", "feed.update", "uploaded"),
        ("key:test", "feed.update", "uploaded"),
        ("key:test", "feed.remove", "uploaded"),
        ("key:test", "feed.add", "uploaded"),
        ("key:test", "feed.update", "uploaded"),
        ("key:test", "feed.remove", "uploaded"),
    ]


def test_url_feed_refresh_now(tmp_path: Path, upstream: AuthServer) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "list.txt").write_text("short.example.test\n")
    srv = FeedServer(web)
    m, api = _serve(tmp_path, upstream)
    try:
        r = api.request("POST", "/api/v1/feeds", json_body={
            "name": "remote", "format": "domains", "refresh": 86400,
            "url": f"http://127.0.0.1:{srv.port}/list.txt"})  # fmt: skip
        assert r.status == 201, r
        assert until(lambda: _rcode(m, "short.example.test") == "NXDOMAIN", 10), m.stderr()
        (web / "list.txt").write_text("tcponly.example.test\n")
        r = api.request("POST", "/api/v1/feeds/remote/refresh")
        assert r.status == 202 and r.json() == {"name": "remote", "refreshing": True}, r
        assert until(lambda: _rcode(m, "tcponly.example.test") == "NXDOMAIN", 10), m.stderr()
        assert until(lambda: _rcode(m, "short.example.test") == "NOERROR", 5), m.stderr()
        assert api.request("POST", "/api/v1/feeds/nope/refresh").status == 404
        # a refused update: its reason and its rejected lines are shown
        (web / "list.txt").write_text("not a name!\nnor this one!\n")
        assert api.request("POST", "/api/v1/feeds/remote/refresh").status == 202

        def refused() -> bool:
            u = api.get("/api/v1/feeds/remote").json()["last_update"]
            return u is not None and u["ok"] is False

        assert until(refused, 10)
        feed = api.get("/api/v1/feeds/remote").json()
        assert "no usable entry" in feed["last_update"]["why"]
        assert [r["line"] for r in feed["rejected"]] == [1, 2]
        assert _rcode(m, "tcponly.example.test") == "NXDOMAIN"  # the last good version stays
    finally:
        assert m.stop() == 0, m.stderr()
        srv.close()
    audit = AuditLog(tmp_path / "audit.sqlite")
    try:
        done = [(e.action, e.target) for e in reversed(audit.entries())]
    finally:
        audit.close()
    assert done == [("feed.add", "remote"), ("feed.refresh", "remote"), ("feed.refresh", "remote")]


def test_groups_from_the_api(tmp_path: Path, upstream: AuthServer) -> None:
    m, api = _serve(tmp_path, upstream)
    toml = m.config.read_bytes()
    try:
        r = api.request("POST", "/api/v1/groups", json_body={
            "name": "kids", "clients": ["127.0.0.2/32"], "query_log_days": 3})  # fmt: skip
        assert r.status == 201, r
        assert r.json()["origin"] == "console" and r.json()["clients"] == ["127.0.0.2/32"]
        # a feed for that group: the config in force has both
        r = api.request("POST", "/api/v1/feeds", json_body={
            "name": "kids-list", "format": "domains", "groups": ["kids"],
            "content": "www.example.test\n"})  # fmt: skip
        assert r.status == 201 and r.json()["groups"] == ["kids"], r
        groups = {g["name"]: g for g in api.get("/api/v1/groups").json()["groups"]}
        assert groups["office"]["origin"] == "toml"
        assert groups["kids"]["zones"] == ["kids.rules.mamori.", "kids-list.feeds.mamori."]
        assert groups["kids"]["feeds"] == ["kids-list"]
        out = _check(m.config)
        assert f"group:     kids: 127.0.0.2/32, from {tmp_path / 'console.toml'}:" in out
        assert re.search(rf"group:     office: 10.1.0.0/16, from {re.escape(str(m.config))}:\d+\n",
                         out)  # fmt: skip

        for body, field in [
            ({"name": "k2", "clients": ["300.1.1.1/8"]}, "clients"),
            ({"name": "k2"}, "clients"),
            ({"name": "k2", "clients": ["10.9.0.0/16"], "query_log_days": -5}, "query_log_days"),
            ({"name": "k2", "client_ids": ["bad id!"]}, "client_ids"),
            ({"name": "K 2", "clients": ["10.9.0.0/16"]}, "name"),
        ]:
            r = api.request("POST", "/api/v1/groups", json_body=body)
            assert r.status == 422 and r.json()["field"] == field, (body, r)
        r = api.request("POST", "/api/v1/groups", json_body={"name": "office", "clients": ["::1"]})
        assert r.status == 409, r
        assert api.request("DELETE", "/api/v1/groups/office").status == 409
        r = api.request("PUT", "/api/v1/groups/kids", json_body={"clients": ["127.0.0.3"]})
        assert r.status == 200 and r.json()["clients"] == ["127.0.0.3/32"], r
        r = api.request("DELETE", "/api/v1/groups/kids")
        assert r.status == 409 and "kids-list" in r.json()["error"], r  # still in use
        assert api.request("DELETE", "/api/v1/feeds/kids-list").status == 204
        # a local rule for the group: the group stays until the rule goes
        rule = {"name": "games.example", "action": "block", "groups": ["kids"]}
        assert api.request("POST", "/api/v1/rules", json_body=rule).status == 201
        r = api.request("DELETE", "/api/v1/groups/kids")
        assert r.status == 409 and "1 local rule" in r.json()["error"], r
        assert api.request("DELETE", "/api/v1/rules/games.example").status == 200
        assert api.request("DELETE", "/api/v1/groups/kids").status == 204
        assert api.request("GET", "/api/v1/groups/kids").status == 404
        assert m.config.read_bytes() == toml
    finally:
        assert m.stop() == 0, m.stderr()


def test_console_pages(tmp_path: Path, upstream: AuthServer) -> None:
    m, api = _serve(tmp_path, upstream)
    console = WebClient(api.base)
    toml = m.config.read_bytes()
    try:
        console.login("admin", "a long test password")
        page = console.get("/feeds").text
        assert "mine-toml" in page and 'id="add-feed"' in page
        body, ctype = multipart(
            {"csrf": console.csrf, "name": "from-form", "format": "domains", "category": "spam"},
            {"file": ("list.txt", b"www.example.test\n")},
        )
        r = console.request("POST", "/feeds/add", body, ctype)
        assert r.status == 303, r
        assert until(lambda: _rcode(m, "www.example.test") == "NXDOMAIN", 10), m.stderr()
        page = console.get("/feeds").text
        assert 'id="feed-from-form"' in page and "console.toml" in page
        r = console.form("/feeds/from-form/disable", {"csrf": console.csrf})
        assert r.status == 303, r
        assert until(lambda: _rcode(m, "www.example.test") == "NOERROR", 5), m.stderr()
        assert "from-form (disabled)" in console.get("/feeds").text
        r = console.form("/feeds/from-form/disable", {"csrf": "wrong"})
        assert r.status == 400
        # the API takes the same multipart/form-data (with a key)
        body, ctype = multipart({"name": "multi", "format": "hosts", "refresh": "600"},
                                {"file": ("hosts", b"0.0.0.0 alias.example.test\n")})  # fmt: skip
        r = api.request("POST", "/api/v1/feeds", body, ctype)
        assert r.status == 201 and r.json()["uploaded"] and r.json()["refresh"] == 600, r
        assert until(lambda: _rcode(m, "alias.example.test") == "NXDOMAIN", 10), m.stderr()
        # a bad value: the page again, the error naming the field
        body, ctype = multipart({"csrf": console.csrf, "name": "x", "format": "domains",
                                 "refresh": "5"}, {"file": ("l.txt", b"a.test\n")})  # fmt: skip
        r = console.request("POST", "/feeds/add", body, ctype)
        assert r.status == 422 and 'data-field="refresh"' in r.text, r
        # groups
        assert "No [[group]]" not in console.get("/groups").text
        r = console.form("/groups/add", {"csrf": console.csrf, "name": "guests",
                                         "clients": "192.168.7.0/24, 10.7.0.0/16"})  # fmt: skip
        assert r.status == 303, r
        page = console.get("/groups").text
        assert "192.168.7.0/24, 10.7.0.0/16" in page and 'id="group-office"' in page
        r = console.form("/groups/guests/edit", {"csrf": console.csrf, "clients": "nonsense"})
        assert r.status == 422 and 'data-field="clients"' in r.text, r
        r = console.form("/groups/guests/remove", {"csrf": console.csrf})
        assert r.status == 303
        assert 'id="group-guests"' not in console.get("/groups").text
        assert m.config.read_bytes() == toml
    finally:
        assert m.stop() == 0, m.stderr()
    audit = AuditLog(tmp_path / "audit.sqlite")
    try:
        actions = [(e.actor, e.action) for e in reversed(audit.entries())]
    finally:
        audit.close()
    assert actions == [("user:admin", "feed.add"), ("user:admin", "feed.update"),
                       ("key:test", "feed.add"),
                       ("user:admin", "group.add"), ("user:admin", "group.remove")]  # fmt: skip


def test_feeds_page_shows_the_config_in_force_after_sighup(
    tmp_path: Path, upstream: AuthServer
) -> None:
    """The Feeds page read the config it started with: after a [[feed]] was added and
    SIGHUP, it said "No [[feed]] configured" while DNS enforced the feed."""
    web = free_port()
    keys = KeyStore(tmp_path / "keys.sqlite")
    keys.add_user("admin", "a long test password")
    keys.close()
    extra = f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()
    console = WebClient(f"http://127.0.0.1:{web}")
    try:
        assert until(lambda: f"console: http://127.0.0.1:{web}/" in m.stderr())
        console.login("admin", "a long test password")
        assert "No [[feed]] configured" in console.get("/feeds").text
        (tmp_path / "late.txt").write_text("www.example.test\n")
        with m.config.open("a") as f:
            f.write(f'[[feed]]\nname = "late"\npath = "{tmp_path / "late.txt"}"\n'
                    'format = "domains"\n')  # fmt: skip
        m.signal(signal.SIGHUP)
        assert until(lambda: _rcode(m, "www.example.test") == "NXDOMAIN", 15), m.stderr()
        page = console.get("/feeds").text
        assert "No [[feed]] configured" not in page  # the bug
        assert 'id="feed-late"' in page
    finally:
        assert m.stop() == 0, m.stderr()


def test_a_bad_overlay_never_stops_the_service(tmp_path: Path, upstream: AuthServer) -> None:
    overlay = tmp_path / "console.toml"
    overlay.write_text('[[feed]]\nname = "x"\nformat = "domains"\nurl = "ftp://nope"\n')
    m, api = _serve(tmp_path, upstream)
    try:
        want = f"{overlay}:4: feed.url: must be an http:// or https:// URL"
        assert want in m.stderr() and "ignored (running with" in m.stderr()
        assert until(lambda: _rcode(m, "mx1.example.test") == "NXDOMAIN"), m.stderr()
        out = _check(m.config)
        assert f"overlay:   IGNORED (mamori serve runs without it): {want}" in out
        r = api.request("POST", "/api/v1/groups", json_body={"name": "k", "clients": ["::1"]})
        assert r.status == 409 and want in r.json()["error"], r  # fix the file first
        assert json.loads(api.get("/api/v1/feeds").text)["feeds"][0]["name"] == "mine-toml"
    finally:
        assert m.stop() == 0, m.stderr()
