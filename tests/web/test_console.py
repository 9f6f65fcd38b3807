"""The console over HTTP (uvicorn on 127.0.0.1, a logged-in client): the overview's counts
and categories, the favicon, the live query log's JSON, the CSRF meta tag."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from mamori.store.sqlite import SQLiteStore
from mamori.web.consoledata import ConsoleData, QueryFilter
from tests.support.console import Client, ConsoleServer, FakeRuntime, write_config

FEED = (
    '[[feed]]\nname = "coinblocker"\npath = "{path}"\nformat = "domains"\n'
    'category = "cryptominer"\n'
)


def row(name: str, zone: str = "", action: str = "", outcome: str = "resolved",
        client: str = "192.0.2.7", ts: float | None = None) -> tuple:  # type: ignore[type-arg]  # fmt: skip
    return (ts or time.time(), client, name, 1, 3 if outcome == "blocked" else 0, "", 0, "",
            False, "udp", zone, name if zone else "", "qname" if zone else "", action, outcome,
            "", "", "")  # fmt: skip


def category_data(page: str) -> dict[str, int]:
    m = re.search(r'<script type="application/json" id="category-data">(.*?)</script>', page)
    assert m, page
    doc: dict[str, int] = json.loads(m.group(1))
    return doc


def test_passthru_hits_are_not_blocks(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    store = SQLiteStore(cfg.store.path)
    store.write_queries(
        [row("allowed.example.", "allow.rpz.", "PASSTHRU") for _ in range(3)]
        + [row("allowed.example.", "allow.rpz.", "PASSTHRU", "cached")]
        + [row("bad.example.", "block.rpz.", "NXDOMAIN", "blocked") for _ in range(2)]
        + [row("www.example.")]
    )
    store.db.close()
    o = ConsoleData(cfg).overview()
    assert o["blocked"] == 2 and o["queries"] == 7
    assert [n for n, _z, _c in o["top_names"]] == ["bad.example."]
    assert o["by_category"] == {"zone: block.rpz": 2}
    assert [c for c, _n in o["top_clients"]] == ["192.0.2.7"] and o["top_clients"][0][1] == 2
    blocked = ConsoleData(cfg).queries(QueryFilter(action="blocked"))
    assert {r[3] for r in blocked} == {"bad.example."}
    allowed = ConsoleData(cfg).queries(QueryFilter(action="allowed"))
    assert {r[3] for r in allowed} == {"allowed.example.", "www.example."}
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        c.login()
        _s, page = c.get("/")
        start = page.index('id="top-names"')
        top = page[start : page.index("</table>", start)]
        assert "bad.example." in top and "allowed.example." not in top


def test_blocks_by_category_names_categories_of_the_config_in_force(tmp_path: Path) -> None:
    """A feed added by a reload (SIGHUP) gets its category; zones without one are labelled."""
    started = write_config(tmp_path)
    (tmp_path / "coin.txt").write_text("miner.example\n")
    reloaded = write_config(tmp_path, FEED.format(path=tmp_path / "coin.txt"))
    store = SQLiteStore(started.store.path)
    store.write_queries(
        [row("miner.example.", "coinblocker.feeds.mamori.", "NXDOMAIN", "blocked")] * 3
        + [row("x.example.", "rpz.example.", "NXDOMAIN", "blocked")]
    )
    store.db.close()
    runtime = FakeRuntime(reloaded)
    data = ConsoleData(started, lambda: runtime.config)
    o = data.overview()
    assert o["by_category"] == {"cryptominer": 3, "zone: rpz.example": 1}
    assert set(o["blocks_by_category"]) == {"cryptominer", "zone: rpz.example"}
    with ConsoleServer(started, runtime) as srv:
        c = Client(srv.base)
        c.login()
        _s, page = c.get("/")
        assert category_data(page) == {"cryptominer": 3, "zone: rpz.example": 1}
        ja = Client(srv.base, "ja")
        ja.login()
        _s, page = ja.get("/")
        assert category_data(page) == {"cryptominer": 3, "ゾーン: rpz.example": 1}


def test_favicon(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)  # no login needed
        status, headers, body = c.request("/favicon.ico")
        assert status == 200 and headers["content-type"] == "image/x-icon"
        assert body[:4] == b"\0\0\1\0"  # an ICO file
        status, headers, body = c.request("/static/favicon.svg")
        assert status == 200 and body.startswith(b"<svg")
        _s, page = c.get("/login")
        assert '<link rel="icon" href="/favicon.ico"' in page
        c.login()
        _s, page = c.get("/")
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page


def test_live_query_log_json(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    store = SQLiteStore(cfg.store.path)
    store.write_queries([row("old.example.")])
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        status, doc = c.json("/queries.json?after=0")
        assert status == 401 and "error" in doc  # the session is needed
        c.login()
        _s, page = c.get("/queries?name=example")
        csrf = re.search(r'<meta name="csrf" content="([0-9a-f]+)">', page)
        assert csrf
        live = re.search(r'data-live="([^"]+)" data-after="(\d+)"', page)
        assert live, page
        assert live.group(1) == "/queries.json?name=example"
        after = int(live.group(2))
        assert after == 1
        store.write_queries(
            [
                row("new.example.", "block.rpz.", "NXDOMAIN", "blocked"),
                row("other.test."),
                row("newer.example."),
            ]
        )
        status, doc = c.json(f"/queries.json?name=example&after={after}")
        assert status == 200
        assert [r["qname"] for r in doc["rows"]] == ["new.example.", "newer.example."]
        assert doc["last"] == doc["rows"][-1]["id"] == 4
        first = doc["rows"][0]
        assert first["blocked"] and first["rcode"] == "NXDOMAIN" and first["zone"] == "block.rpz."
        assert 'data-name="new.example" data-action="block"' in first["html"]
        assert "NXDOMAIN by block.rpz." in first["html"]
        status, doc = c.json("/queries.json?name=example&after=4")
        assert status == 200 and doc == {"rows": [], "last": 4}
        status, doc = c.json("/queries.json?after=x")
        assert status == 400 and doc["field"] == "after"
        ja = Client(srv.base, "ja,en;q=0.5")
        ja.login()
        status, doc = ja.json("/queries.json?after=1&action=blocked")
        assert [r["qname"] for r in doc["rows"]] == ["new.example."]
        assert "block.rpz. により NXDOMAIN" in doc["rows"][0]["html"]
        assert ">ブロック</button>" in doc["rows"][0]["html"]
    store.db.close()


def test_dataset_zones_take_their_single_category(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a.example\n")
    (tmp_path / "b.txt").write_text("b.example\n")
    feeds = "".join(
        f'[[feed]]\nname = "{n}"\npath = "{tmp_path / f"{n}.txt"}"\nformat = "domains"\n'
        f'category = "{c}"\n'
        for n, c in (("a", "phishing"), ("b", "malware"))
    )
    cfg = write_config(
        tmp_path,
        feeds + '[[dataset]]\nname = "phish"\ncategories = ["phishing"]\nenforce = true\n'
        '[[dataset]]\nname = "threats"\nfeeds = ["a", "b"]\nenforce = true\n',
    )
    data = ConsoleData(cfg)
    assert data.label("a.feeds.mamori.") == "phishing"
    assert data.label("phish.datasets.mamori.") == "phishing"
    assert data.label("threats.datasets.mamori.") == "zone: threats.datasets.mamori"
    assert data.label("local.rpz.") == "zone: local.rpz"


def test_a_query_row_shows_the_client_group_when_the_log_has_it(tmp_path: Path) -> None:
    from mamori.web.console import Console, _query_row
    from mamori.web.keys import KeyStore

    r = (7, 1.0e9, "10.0.0.2", "x.example.", 1, 3, "", 0, "", "block.rpz.", "x.example",
         "NXDOMAIN", "blocked", "nxdomain")  # fmt: skip
    assert _query_row(r)["group"] == "" and _query_row((*r, "kids"))["group"] == "kids"
    cfg = write_config(tmp_path)
    keys = KeyStore(tmp_path / "keys.sqlite")
    console = Console(cfg, keys, None)
    keys.close()
    for lang, title in (("en", "group"), ("ja", "グループ")):
        macro = console.envs[lang].get_template("_macros.html").module.query_row  # type: ignore[attr-defined]
        html = str(macro(_query_row((*r, "kids"))))
        assert f'10.0.0.2 <span class="group" title="{title}">(kids)</span>' in html
        assert "(kids)" not in str(macro(_query_row(r)))


def test_newly_observed_domains_are_a_category_of_their_own(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[nod]\nenabled = true\naction = "block"\n')
    assert ConsoleData(cfg).label("nod.mamori.") == "newly-observed"
    assert ConsoleData(write_config(tmp_path, "")).label("nod.mamori.") == "zone: nod.mamori"
