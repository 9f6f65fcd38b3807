"""GET /api/v1/stats (the overview's figures as JSON) and the console's audit page,
served by a real ``mamori web`` over a store filled beforehand."""

from __future__ import annotations

import copy
import http.cookiejar
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mamori.store.audit import AuditLog, audit_path
from mamori.store.sqlite import SQLiteStore
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

NOW = time.time()


# the query log row: ... the reason, the client group (none)
def _row(ago: float, client: str, name: str, zone: str = "", outcome: str = "resolved") -> Any:
    rule, trigger, action = (f"{name}{zone}", "QNAME", "NXDOMAIN") if zone else ("", "", "")
    return (NOW - ago, client, name, 1, 3 if zone else 0, "", 0, "", False, "udp", zone,
            rule, trigger, action, outcome, "", "", "")  # fmt: skip


def _mamori(conf: Path, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", *args, "--config", str(conf)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str, str]]:
    tmp = tmp_path_factory.mktemp("web")
    port = free_port()
    (tmp / "phish.txt").write_text("phish.test\n")
    conf = tmp / "mamori.toml"
    conf.write_text(
        f'[store]\npath = "{tmp / "mamori.db"}"\n'
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
        f'[[feed]]\nname = "phish"\npath = "{tmp / "phish.txt"}"\nformat = "domains"\n'
        'category = "phishing"\n'
    )
    store = SQLiteStore(tmp / "mamori.db")
    zone = "phish.feeds.mamori."
    store.write_queries([
        _row(60, "192.0.2.1", "phish.test.", zone, "blocked"),
        _row(120, "192.0.2.1", "phish.test.", zone, "blocked"),
        _row(180, "192.0.2.2", "login.phish.test.", zone, "blocked"),
        _row(200, "192.0.2.3", "www.example.test."),
        _row(240, "192.0.2.3", "ok.example.test.", "local.rpz.", "cached"),  # PASSTHRU
        _row(3 * 86400, "192.0.2.9", "old.phish.test.", zone, "blocked"),  # outside 24 h
    ])  # fmt: skip
    store.close()
    audit = AuditLog(audit_path(tmp))
    for i in range(60):
        audit.record("user:admin", "198.51.100.7", "rule.add", f"n{i:02d}.example", {"i": i})
    audit.record("key:robot", "", "feed.disable", "phish", {"enabled": False})
    audit.close()
    key = _mamori(conf, "keys", "add", "reader", "--scope", "read")
    trial = _mamori(conf, "keys", "add", "trial", "--quota", "1", "--scope", "read")
    _mamori(conf, "keys", "add", "analyst")  # scope pdns: the passive DNS APIs only
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "web", "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert until(lambda: _status(f"{url}/openapi.json") == 200, 15)
        yield url, conf, key, trial
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        with e:
            return e.code
    except OSError:
        return 0


def _get(url: str, headers: dict[str, str] | None = None, opener: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with (opener or urllib.request.build_opener()).open(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


def _console(url: str, conf: Path) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{url}/login", timeout=5) as r:
        m = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
    assert m is not None
    password = (conf.parent / "initial-admin-password").read_text().strip()
    form = {"csrf": m[1], "next": "/", "user": "admin", "password": password}
    with opener.open(f"{url}/login", data=urllib.parse.urlencode(form).encode(), timeout=5) as r:
        assert "/login" not in r.url
    return opener


def _nullable(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema (for jsonschema)."""
    if isinstance(schema, dict):
        out = {k: _nullable(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable"):
            out["type"] = [schema["type"], "null"]
        return out
    if isinstance(schema, list):
        return [_nullable(x) for x in schema]
    return schema


def test_stats_with_an_api_key(web: tuple[str, Path, str, str]) -> None:
    url, _conf, key, _trial = web
    code, body = _get(f"{url}/api/v1/stats", {"X-API-Key": key})
    assert code == 200, body
    assert body["window"]["hours"] == 24
    assert body["queries"] == 5 and body["blocked"] == 3
    assert len(body["series"]) in (24, 25) and sum(h["blocked"] for h in body["series"]) == 3
    assert body["blocks_by_category"] == {"phishing": 3}
    assert body["top_blocked"][0] == {"name": "phish.test.", "zone": "phish.feeds.mamori.",
                                      "count": 2}  # fmt: skip
    assert body["top_clients"] == [
        {"client": "192.0.2.1", "blocked": 2}, {"client": "192.0.2.2", "blocked": 1},
    ]  # fmt: skip
    assert body["cache_hit_rate"] is None and body["upstreams"] is None  # no DNS in `web`
    # a wider window takes the old block in; Bearer works as X-API-Key does
    code, week = _get(f"{url}/api/v1/stats?hours=168", {"Authorization": f"Bearer {key}"})
    assert code == 200 and week["blocked"] == 4 and week["window"]["hours"] == 168
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=5) as r:
        spec = json.loads(r.read())
    op = spec["paths"]["/api/v1/stats"]["get"]
    schema = _nullable(copy.deepcopy(op["responses"]["200"]["content"]["application/json"]))
    jsonschema.validate(body, schema["schema"])
    jsonschema.validate(week, schema["schema"])


def test_stats_auth_and_bad_input(web: tuple[str, Path, str, str]) -> None:
    url, _conf, key, trial = web
    code, body = _get(f"{url}/api/v1/stats")
    assert code == 401 and "API key" in body["error"]
    code, body = _get(f"{url}/api/v1/stats", {"X-API-Key": "not-a-key"})
    assert code == 401 and body["error"]
    assert _get(f"{url}/api/v1/stats", {"X-API-Key": trial})[0] == 200
    code, body = _get(f"{url}/api/v1/stats", {"X-API-Key": trial})  # quota 1 a day
    assert code == 429 and body["error"]
    for bad in ("abc", "0", "-3", "100000", "1.5"):
        code, body = _get(f"{url}/api/v1/stats?hours={bad}", {"X-API-Key": key})
        assert code == 400 and body["field"] == "hours", (bad, body)
    for bad in ("a%00b", "n" * 65):  # node: the checks and texts of /api/v1/queries
        code, body = _get(f"{url}/api/v1/stats?node={bad}", {"X-API-Key": key})
        assert code == 422 and body["field"] == "node", (bad, body)
        assert (code, body) == _get(f"{url}/api/v1/queries?node={bad}", {"X-API-Key": key})
    # a wrong key is refused before the input is looked at
    assert _get(f"{url}/api/v1/stats?hours=abc", {"X-API-Key": "nope"})[0] == 401


def test_a_passive_dns_key_cannot_use_the_rest_api(
    web: tuple[str, Path, str, str], tmp_path: Path
) -> None:
    """Keys are scoped: a pdns key (the default, and every key made before scopes) reads
    passive DNS only; the REST API needs read (GET) or admin (changes)."""
    url, conf, _key, _trial = web
    pdns_key = _mamori(conf, "keys", "add", "pdns-only")
    code, body = _get(f"{url}/api/v1/stats", {"X-API-Key": pdns_key})
    assert code == 403 and "scope pdns" in body["error"] and "--scope read" in body["error"]
    req = urllib.request.Request(f"{url}/pdns/query/example.test", headers={"X-API-Key": pdns_key})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    assert status in (200, 404), status  # not 401/403: the key is good for passive DNS
    listed = _mamori(conf, "keys", "list")
    assert "pdns-only: scope pdns" in listed and "reader: scope read" in listed


def test_stats_with_the_console_session(web: tuple[str, Path, str, str]) -> None:
    url, conf, _key, _trial = web
    code, body = _get(f"{url}/api/v1/stats?hours=1", opener=_console(url, conf))
    assert code == 200 and body["window"]["hours"] == 1 and body["queries"] == 5


def _page(opener: urllib.request.OpenerDirector, url: str) -> str:
    with opener.open(url, timeout=5) as r:
        return str(r.read().decode())


def _targets(html: str) -> list[str]:
    return re.findall(r"<td>(n\d\d\.example|phish)</td>", html)


def test_audit_page_lists_searches_and_pages(web: tuple[str, Path, str, str]) -> None:
    url, conf, _key, _trial = web
    assert _status(f"{url}/audit") in (200, 303)  # not logged in: the login page
    with urllib.request.urlopen(f"{url}/audit", timeout=5) as r:
        assert "/login" in r.url
    console = _console(url, conf)
    html = _page(console, f"{url}/audit")
    assert 'href="/audit"' in html  # in the navigation
    first = _targets(html)
    assert len(first) == 50 and first[0] == "phish" and first[1] == "n59.example"
    assert "key:robot" in html and "feed.disable" in html and "198.51.100.7" in html
    assert "&#34;enabled&#34;: false" in html or '"enabled": false' in html
    older = re.search(r'href="(/audit\?[^"]+)" id="older"', html)
    assert older is not None
    rest = _targets(_page(console, url + older[1].replace("&amp;", "&")))
    assert rest == [f"n{i:02d}.example" for i in range(10, -1, -1)]
    assert first[-1] == "n11.example"
    found = _page(console, f"{url}/audit?q=n05")
    assert _targets(found) == ["n05.example"]
    found = _page(console, f"{url}/audit?q=robot")
    assert _targets(found) == ["phish"]
    assert "No matching changes." in _page(console, f"{url}/audit?q=nothing-like-it")
