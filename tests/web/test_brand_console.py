"""The brand watch in the console and the REST API, over a real web server, a real passive
DNS store (SQLite) and the real rules store: a brand added from the page finds the
look-alikes passive DNS holds, one is blocked in one click (a local rule), the matches
export as CSV and STIX 2.1; brands are added and removed by API key too."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.parse
from pathlib import Path

import stix2

from mamori import config as cfgmod
from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.store.rules import open_store
from mamori.web.app import keys_path
from mamori.web.keys import KeyStore
from tests.support.console import Client, ConsoleServer, FakeRuntime, write_config

T0 = 1_790_000_000
LOOKALIKES = ("rnizuho.com", "xn--mizuh-vce.co.jp", "mizuho-login.example.net")


def _pdns(cfg: cfgmod.Config) -> None:
    store = PdnsSQLite(cfgmod.pdns_path(cfg))
    names = (*LOOKALIKES, "www.mizuho.co.jp", "unrelated.example.org")
    store.write({(f"{n}.", 1, f"203.0.113.{i + 1}", ""): [T0 + i, T0 + 60 + i, 3]
                 for i, n in enumerate(names)})  # fmt: skip
    store.close()


class Reloading(FakeRuntime):
    """A runtime whose reload reads the configuration again, as the service's does."""

    def __init__(self, cfg: cfgmod.Config) -> None:
        super().__init__(cfg)
        self.zones_changed = None
        self.woken = 0

    async def reload(self) -> None:
        assert self.current is not None
        self.current = cfgmod.load(self.current.path)

    def brand_wake(self) -> None:
        self.woken += 1


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert m, page
    return m.group(1)


def _post(c: Client, path: str, form: dict[str, str]) -> tuple[int, str]:
    return c._post(path, urllib.parse.urlencode(form).encode())


def test_brand_page_adds_finds_blocks_and_exports(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    _pdns(cfg)
    runtime = Reloading(cfg)
    with ConsoleServer(cfg, runtime) as srv:
        c = Client(srv.base)
        c.login()
        status, page = c.get("/brands")
        assert status == 200 and "No brand watched yet" in page
        form = {"csrf": _csrf(page), "name": "Mizuho", "domains": "mizuho.co.jp mizuhobank.co.jp"}
        status, page = _post(c, "/brands/add", form)
        assert status == 200, page
        assert "[[brand]]" in (tmp_path / "console.toml").read_text() and runtime.woken == 1
        status, page = _post(c, "/brands/scan", {"csrf": _csrf(page)})
        assert status == 200 and 'id="notice"' in page, page
        for name in LOOKALIKES:
            assert f">{name}</a>" in page, name
        assert ">www.mizuho.co.jp</a>" not in page and "unrelated.example.org" not in page
        # block in one click: a local rule for the name and its subdomains
        status, page = _post(c, "/brands/block", {"csrf": _csrf(page), "name": "rnizuho.com",
                                                  "brand": "Mizuho"})  # fmt: skip
        assert status == 200 and "blocked" in page
        rules = open_store(cfg)
        try:
            [rule] = rules.get("rnizuho.com")
        finally:
            rules.audit.close()
        assert rule.action == "block" and rule.subdomains and "Mizuho" in rule.comment
        # export: CSV rows and STIX 2.1 indicators, one per match
        status, _h, body = c.request("/api/v1/brand-matches?format=csv&brand=Mizuho")
        assert status == 200
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        assert {r["name"] for r in rows} == set(LOOKALIKES)
        assert {r["kind"] for r in rows if r["name"] == "xn--mizuh-vce.co.jp"} == {"idn-homograph"}
        status, _h, body = c.request("/api/v1/brand-matches?format=stix")
        bundle = stix2.parse(body.decode(), allow_custom=False)
        patterns = sorted(o.pattern for o in bundle.objects)
        assert patterns == sorted(f"[domain-name:value = '{n}']" for n in LOOKALIKES)


def test_brands_api_adds_lists_and_removes_with_a_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[brand]]\nname = "Rakuten"\ndomains = ["rakuten.co.jp"]\n')
    _pdns(cfg)
    keys = KeyStore(keys_path(cfg))
    admin = keys.add("ops", rate=1000, burst=1000, scope="admin")
    reader = keys.add("ro", rate=1000, burst=1000, scope="read")
    keys.close()
    runtime = Reloading(cfg)
    with ConsoleServer(cfg, runtime) as srv:
        c = Client(srv.base)

        def call(method: str, path: str, key: str, body: object = None) -> tuple[int, object]:
            data = json.dumps(body).encode() if body is not None else None
            status, _h, raw = c.request(path, data, {"X-API-Key": key,
                                        "Content-Type": "application/json"}, method)  # fmt: skip
            return status, json.loads(raw) if raw else None

        status, doc = call("POST", "/api/v1/brands", admin,
                           {"name": "Mizuho", "domains": ["www.mizuho.co.jp"]})  # fmt: skip
        assert status == 422 and isinstance(doc, dict) and doc["field"] == "domains", doc
        assert call("POST", "/api/v1/brands", reader, {"name": "X", "domains": ["x.com"]})[0] == 403
        status, doc = call("POST", "/api/v1/brands", admin,
                           {"name": "Mizuho", "domains": ["mizuho.co.jp"]})  # fmt: skip
        assert status == 201 and isinstance(doc, dict) and doc["origin"] == "console", doc
        status, doc = call("GET", "/api/v1/brands", reader)
        assert status == 200 and isinstance(doc, dict)
        got = [(b["name"], b["origin"], b["keywords"]) for b in doc["brands"]]
        assert got == [("Rakuten", "toml", ["rakuten"]), ("Mizuho", "console", ["mizuho"])]
        # brand names ignore case: no second Mizuho, no console RAKUTEN beside the TOML's
        status, doc = call("POST", "/api/v1/brands", admin,
                           {"name": "MIZUHO", "domains": ["mizuhobank.co.jp"]})  # fmt: skip
        assert status == 409 and isinstance(doc, dict), doc
        assert "brand MIZUHO exists (as Mizuho: brand names ignore case)" in doc["error"]
        status, doc = call("POST", "/api/v1/brands", admin,
                           {"name": "rakuten", "domains": ["rakuten.com"]})  # fmt: skip
        assert status == 409 and isinstance(doc, dict) and "defined in" in doc["error"], doc
        assert call("GET", "/api/v1/brands/mizuho", reader)[0] == 200
        # matches of one brand: any case; an unknown brand is 404, not an empty list
        status, doc = call("GET", "/api/v1/brand-matches?brand=rakuten", reader)
        assert status == 200 and isinstance(doc, dict) and doc["matches"] == [], doc
        status, doc = call("GET", "/api/v1/brand-matches?brand=nope", reader)
        assert status == 404 and isinstance(doc, dict), doc
        assert doc["error"] == "no brand named nope (watched: Rakuten, Mizuho)"
        assert call("DELETE", "/api/v1/brands/Rakuten", admin)[0] == 409  # the user's TOML
        assert call("DELETE", "/api/v1/brands/Mizuho", reader)[0] == 403
        assert call("DELETE", "/api/v1/brands/Mizuho", admin)[0] == 204
        assert "Mizuho" not in (tmp_path / "console.toml").read_text()
        assert call("GET", "/api/v1/brands/Mizuho", reader)[0] == 404
        status, doc = call("POST", "/api/v1/brand-matches/scan", admin)
        assert status == 200 and isinstance(doc, dict) and doc["matched"] == 0, doc  # Rakuten
        status, doc = call("GET", "/api/v1/brand-matches?since=x", reader)
        assert status == 422 and isinstance(doc, dict) and doc["field"] == "since"
