"""The console and the block page in Debian's Chromium (Playwright), after real DNS traffic.

Log in, see the overview populated by a burst of queries (some blocked, one
client flagged as likely infected), search the query log, open the block
page of a blocked name in English and Japanese, report a false positive and
find it in the console. Screenshots of every page go to the test's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MamoriProcess, int, int, Path]]:
    tmp = tmp_path_factory.mktemp("console")
    web, bp = free_port(), free_port()
    (tmp / "cc.txt").write_text("mx1.example.test\n")
    (tmp / "phish.txt").write_text("mail.example.test\n")
    extra = (
        "[policy]\nwatch_interval = 0.2\n[pdns]\nenabled = true\nflush_interval = 0.2\n"
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\n'
        f'[blockpage]\nenabled = true\naddress = "127.0.0.1"\nlisten = ["127.0.0.1:{bp}"]\n'
        f'[[feed]]\nname = "cc"\npath = "{tmp / "cc.txt"}"\nformat = "domains"\n'
        'category = "botnet-cc"\n'
        f'[[feed]]\nname = "phish"\npath = "{tmp / "phish.txt"}"\nformat = "domains"\n'
        'category = "phishing"\n'
    )
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(tmp, [f"127.0.0.1:{up.port}"], extra=extra)
        r = subprocess.run(
            [sys.executable, "-m", "mamori", "users", "add", "admin", "--password-stdin",
             "--config", str(m.config)],
            input=PASSWORD + "\n", capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        m.start()
        try:
            assert until(lambda: m.query("mx1.example.test").rcode() == 3, 20)
            assert until(lambda: m.query("mail.example.test").rcode() == 3, 20)
            for _ in range(5):
                assert m.query("www.example.test").rcode() == 0
            for _ in range(3):
                m.query("mx1.example.test")
            yield m, web, bp, tmp
        finally:
            assert m.stop() == 0, m.stderr()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium,
            args=["--headless=new", "--no-sandbox", "--disable-gpu",
                  "--host-resolver-rules=MAP mail.example.test 127.0.0.1"],
        )  # fmt: skip
        yield b
        b.close()


def test_console_and_block_page(site: tuple[MamoriProcess, int, int, Path], browser: object,
                                tmp_path: Path) -> None:  # fmt: skip
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    _m, web, bp, _tmp = site
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = f"http://127.0.0.1:{web}"
    page = browser.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # pages need a login; a wrong password is refused
    page.goto(f"{base}/queries")
    assert "/login" in page.url
    page.fill("#user", "admin")
    page.fill("#password", "wrong password!")
    page.click("#login")
    expect(page.locator("#login-error")).to_contain_text("Wrong user or password")
    page.fill("#user", "admin")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{base}/queries")

    # the overview, populated by the traffic
    page.goto(f"{base}/")
    assert until(lambda: int(page.reload() and page.inner_text("#n-blocked")) >= 5, 15)
    expect(page.locator("#infected")).to_contain_text("127.0.0.1")
    expect(page.locator("#infected")).to_contain_text("mx1.example.test")
    expect(page.locator("#top-names")).to_contain_text("mx1.example.test")
    assert page.evaluate("Chart.getChart('chart-queries') !== undefined")
    stacked = page.evaluate(
        "Chart.getChart('chart-blocks').data.datasets"
        ".map(d => [d.label, d.data.reduce((a, b) => a + b, 0)])"
    )
    assert ["botnet-cc", 4] in stacked and ["phishing", 1] in stacked, stacked
    labels = page.evaluate("Chart.getChart('chart-categories').data.labels")
    assert "botnet-cc" in labels, (labels, errors)
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    # the query log: search by name
    page.goto(f"{base}/queries")
    page.fill("#f-name", "mx1")
    page.click("#search")
    expect(page.locator("#results")).to_contain_text("mx1.example.test")
    expect(page.locator("#results")).to_contain_text("NXDOMAIN by cc.feeds.mamori.")
    assert "www.example.test" not in page.inner_text("#results")
    page.screenshot(path=str(shots / "queries.png"), full_page=True)

    # policy: explain a name
    page.goto(f"{base}/policy?explain=mail.example.test")
    expect(page.locator("#verdict")).to_contain_text("phish.feeds.mamori.")
    page.screenshot(path=str(shots / "policy.png"), full_page=True)

    # passive DNS: what the resolver saw, with its timeline chart
    page.goto(f"{base}/pdns")
    page.fill("#pdns-q", "www.example.test")
    page.click("#pdns-go")
    expect(page.locator("#pdns-results")).to_contain_text("192.0.2.1")
    assert page.evaluate("Chart.getChart('chart-timeline').data.labels.length") == 2
    page.screenshot(path=str(shots / "pdns.png"), full_page=True)

    # the block page, in English then Japanese (by the browser's language)
    pages = [
        ("en-US", "This site is blocked", "blockpage-en.png"),
        ("ja-JP", "このサイトはブロックされました", "blockpage-ja.png"),
    ]
    for locale, title, shot in pages:
        ctx = browser.new_context(locale=locale)
        bpage = ctx.new_page()
        bpage.goto(f"http://mail.example.test:{bp}/account/login")
        expect(bpage.locator("h1")).to_have_text(title)
        expect(bpage.locator("#blocked-name")).to_have_text("mail.example.test")
        bpage.screenshot(path=str(shots / shot), full_page=True)
        if locale == "ja-JP":  # report a false positive from the Japanese page
            bpage.fill("#comment", "取引先のメールサーバーです")
            bpage.click("#report")
            expect(bpage.locator("#reported")).to_be_visible()
        ctx.close()

    # the report is in the console
    page.goto(f"{base}/reports")
    expect(page.locator("#reports")).to_contain_text("取引先のメールサーバーです")
    expect(page.locator("#reports")).to_contain_text("mail.example.test")
    page.screenshot(path=str(shots / "reports.png"), full_page=True)
    page.click("#reports button")
    expect(page.locator("#reports")).to_contain_text("closed")

    # logging out ends the session
    page.click("#logout")
    page.goto(f"{base}/")
    assert "/login" in page.url
    assert sorted(os.listdir(shots)) == [
        "blockpage-en.png", "blockpage-ja.png", "overview.png", "pdns.png", "policy.png",
        "queries.png", "reports.png",
    ]  # fmt: skip
