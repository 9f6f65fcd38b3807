"""Newly observed domains in a real ``mamori serve`` with a real upstream: listed, blocked
or only logged per ``[nod] action``, answered by the NOD DNSBL with age codes, and the
block page's warning in Chromium: the user sees it, continues, and the site loads.

The passive DNS store is made before the start with a baseline three days old (the
warm-up is over) and a domain first seen 4.5 hours ago; a domain never seen before is
then asked through mamori, recorded by its tap and becomes new at the next refresh.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from mamori.store.pdns_sqlite import PdnsSQLite
from tests.conftest import require_binary
from tests.support.authserver import AuthServer
from tests.support.browser import no_csp_violation, watch_csp
from tests.support.dnsproxy import dns_proxy
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

ZONE = """
$TTL 300
@          IN SOA ns1 hostmaster 1 3600 600 86400 60
@          IN NS ns1
ns1        IN A 127.0.0.1
www.old    IN A 192.0.2.1
www.aging  IN A 192.0.2.3
www.fresh  IN A 127.0.0.2
"""
H = 3600


def _baseline(tmp: Path) -> None:
    """www.old.test first seen three days ago; www.aging.test 4.5 hours ago."""
    now = int(time.time())
    store = PdnsSQLite(tmp / "pdns.sqlite")
    try:
        store.write({
            ("www.old.test.", 1, "192.0.2.1", "test."): [now - 72 * H, now - 60, 10],
            ("www.aging.test.", 1, "192.0.2.3", "test."): [now - int(4.5 * H), now - 60, 2],
        })  # fmt: skip
    finally:
        store.close()


def _nod(action: str, extra: str = "") -> str:
    return (
        "[pdns]\nenabled = true\nflush_interval = 0.1\n"
        f'[nod]\nenabled = true\nwindow = "24h"\naction = "{action}"\nrefresh = 0.3\n{extra}'
    )


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "test.") as up:
        yield up


def _rcode(m: MamoriProcess, name: str) -> int:
    return int(m.query(name).rcode())


def test_block_lists_new_domains_blocks_them_and_the_dnsbl_tells_their_age(
    tmp_path: Path, upstream: AuthServer
) -> None:
    _baseline(tmp_path)
    bl = free_port()
    extra = f'dnsbl_zone = "nod.bl.test."\ndnsbl_listen = ["127.0.0.1:{bl}"]\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=_nod("block", extra))
    m.start()
    try:
        assert until(lambda: _rcode(m, "www.aging.test") == dns.rcode.NXDOMAIN, 15)
        assert _rcode(m, "login.aging.test") == dns.rcode.NXDOMAIN  # below it too
        old = m.query("www.old.test")
        assert old.rcode() == 0 and "192.0.2.1" in old.answer[0].to_text()
        # never seen: the first answer passes (and is recorded), then the domain is new
        first = m.query("www.fresh.test")
        assert first.rcode() == 0 and "127.0.0.2" in first.answer[0].to_text()
        assert until(lambda: _rcode(m, "www.fresh.test") == dns.rcode.NXDOMAIN, 15)
        assert _rcode(m, "fresh.test") == dns.rcode.NXDOMAIN
        assert _rcode(m, "www.old.test") == 0

        def dnsbl(name: str, rdtype: str = "A") -> dns.message.Message:
            q = dns.message.make_query(f"{name}.nod.bl.test.", rdtype)
            return dns.query.udp(q, "127.0.0.1", port=bl, timeout=3)

        # the responder reloads its entries within 5 seconds of a change
        assert until(lambda: dnsbl("fresh.test").answer != [], 15)
        assert [rr.to_text() for rr in dnsbl("fresh.test").answer[0]] == ["127.0.2.2"]
        assert [rr.to_text() for rr in dnsbl("www.aging.test").answer[0]] == ["127.0.2.5"]
        assert "less than 5 hours" in dnsbl("aging.test", "TXT").answer[0].to_text()
        assert dnsbl("www.old.test").rcode() == dns.rcode.NXDOMAIN
        assert dnsbl("test").answer[0][0].to_text() == "127.0.0.2"  # RFC 5782 test point

        cli = [sys.executable, "-m", "mamori", "nod", "list", "--config", str(m.config)]
        out = subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True)
        doc = json.loads(out.stdout)
        assert not doc["warming"]
        assert [(d["domain"], d["code"]) for d in doc["domains"]] == [
            ("aging.test.", "127.0.2.5"), ("fresh.test.", "127.0.2.2"),
        ]  # fmt: skip
        out = subprocess.run([*cli, "--since", "1h"], capture_output=True, text=True, check=True)
        assert "fresh.test." in out.stdout and "aging.test." not in out.stdout
    finally:
        assert m.stop() == 0, m.stderr()


def test_log_only_answers_and_records_the_hit(tmp_path: Path, upstream: AuthServer) -> None:
    _baseline(tmp_path)
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=_nod("log"))
    m.start()
    try:

        def hits() -> list[tuple[str, str, str]]:
            m.query("www.aging.test")
            with sqlite3.connect(m.db) as db:
                rows = db.execute("SELECT zone, trigger, action FROM policy_hits").fetchall()
            return [tuple(r) for r in rows]

        assert until(lambda: ("nod.mamori.", "QNAME", "disabled") in hits(), 15), hits()
        r = m.query("www.aging.test")
        assert r.rcode() == 0 and "192.0.2.3" in r.answer[0].to_text()

        def logged() -> list[tuple[str, str, str]]:
            with sqlite3.connect(m.db) as db:
                return db.execute(
                    "SELECT qname, policy_zone, policy_action FROM query_log"
                    " WHERE policy_zone != ''"
                ).fetchall()

        # the query log row says it too (the console shows it as "would block")
        row = ("www.aging.test.", "nod.mamori.", "disabled")
        assert until(lambda: row in logged(), 15), logged()
    finally:
        assert m.stop() == 0, m.stderr()


class _Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>fresh</title><h1 id=site>the real fresh.test</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_warn_shows_the_block_page_and_continue_lets_the_user_through(
    tmp_path: Path, upstream: AuthServer
) -> None:
    chromium = require_binary("chromium")
    from playwright.sync_api import expect, sync_playwright

    _baseline(tmp_path)
    bp = free_port()
    site = ThreadingHTTPServer(("127.0.0.2", bp), _Site)  # the real site, same port
    threading.Thread(target=site.serve_forever, daemon=True).start()
    extra = (
        f'[blockpage]\nenabled = true\naddress = "127.0.0.1"\nlisten = ["127.0.0.1:{bp}"]\n'
        + _nod("warn", 'continue_for = "2h"\n')
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra)
    m.start()
    try:
        assert m.query("www.fresh.test").answer[0][0].to_text() == "127.0.0.2"  # first sight
        assert until(lambda: m.query("www.fresh.test").answer[0][0].to_text() == "127.0.0.1", 15)
        with dns_proxy(m.port) as (proxy, seen), no_csp_violation(), sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=chromium,
                args=["--headless=new", "--no-sandbox", "--disable-gpu",
                      f"--proxy-server=http://127.0.0.1:{proxy}"],
            )  # fmt: skip
            try:
                page = watch_csp(b.new_context(locale="en-US").new_page())
                page.goto(f"http://www.fresh.test:{bp}/account?x=1")
                expect(page.locator("h1")).to_have_text("This site is new")
                expect(page.locator("#blocked-name")).to_have_text("www.fresh.test")
                expect(page.locator("#category")).to_contain_text("newly observed domain")
                expect(page.locator("#since")).to_have_text(
                    re.compile(r"20\d\d-\d\d-\d\d \d\d:\d\d UTC")
                )
                page.screenshot(path=str(tmp_path / "nod-warn.png"), full_page=True)
                page.click("#continue")
                expect(page.locator("#site")).to_have_text("the real fresh.test")
                assert page.url == f"http://www.fresh.test:{bp}/account?x=1"
                assert seen[-1] == ("www.fresh.test", "127.0.0.2")
                # the aging domain still warns, in Japanese for a Japanese browser
                ja = watch_csp(b.new_context(locale="ja-JP").new_page())
                ja.goto(f"http://www.aging.test:{bp}/")
                expect(ja.locator("h1")).to_have_text("このサイトは新しいサイトです")
                expect(ja.locator("#continue")).to_have_text("サイトへ進む")
            finally:
                b.close()
        assert m.query("login.fresh.test").rcode() == dns.rcode.NXDOMAIN  # upstream's own
        # a browser that still has the block address cached is told the site is allowed
        req = urllib.request.Request(f"http://127.0.0.1:{bp}/", headers={"Host": "www.fresh.test"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=3)
        with e.value as r:
            html = r.read().decode()
        assert r.code == 403 and 'id="allowed"' in html and 'id="continue"' not in html
        assert m.query("www.aging.test").answer[0][0].to_text() == "127.0.0.1"
    finally:
        site.shutdown()
        site.server_close()
        assert m.stop() == 0, m.stderr()
