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
from tests.support.browser import no_csp_violation, watch_csp
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_csp_violation() -> Iterator[None]:
    """Every page these tests open works under the console's CSP: none reports a violation."""
    with no_csp_violation():
        yield


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
    page = watch_csp(browser.new_page())
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
        bpage = watch_csp(ctx.new_page())
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


def test_csp_is_enforced_and_a_violation_would_be_seen(
    site: tuple[MamoriProcess, int, int, Path], browser: object
) -> None:
    """The control for the CSP checks above: the console is served with its CSP, and an
    inline script or style put into its page is refused by Chromium and reported."""
    from playwright.sync_api import Browser

    from tests.support.browser import VIOLATIONS

    assert isinstance(browser, Browser)
    _m, web, _bp, _tmp = site
    page = watch_csp(browser.new_page())
    response = page.goto(f"http://127.0.0.1:{web}/login")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.inlineRan = true'; document.body.appendChild(s);"
        " document.body.setAttribute('style', 'color: red'); }"
    )
    assert until(lambda: len(VIOLATIONS) >= 2, 5), VIOLATIONS
    assert page.evaluate("window.inlineRan") is None
    assert any("inline script" in v for v in VIOLATIONS), VIOLATIONS
    VIOLATIONS.clear()  # seen as expected: not a failure of this test
    page.close()


def login(page: object, base: str) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.goto(f"{base}/login")
    page.fill("#user", "admin")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(f"{base}/")


def test_console_fixes_live_log_and_languages(
    site: tuple[MamoriProcess, int, int, Path], browser: object, tmp_path: Path
) -> None:
    """The favicon, the passive DNS chart's time axis, the live query log (pause, filters),
    the console in Japanese (Accept-Language and the switch); screenshots in both."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    m, web, _bp, _tmp = site
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = f"http://127.0.0.1:{web}"
    ctx = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = watch_csp(ctx.new_page())
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, base)

    # /favicon.ico (was a 404), and the icon links
    r = page.request.get(f"{base}/favicon.ico")
    assert r.status == 200 and r.headers["content-type"] == "image/x-icon"
    assert page.locator('link[rel="icon"]').count() == 2

    # the passive DNS first/last-seen chart: its time axis is where the data is (was 1970)
    page.goto(f"{base}/pdns?q=www.example.test")
    expect(page.locator("#pdns-results")).to_contain_text("192.0.2.1")
    x_min = page.evaluate("Chart.getChart('chart-timeline').scales.x.min")
    first = page.evaluate("JSON.parse(document.getElementById('timeline-data').textContent)")
    assert x_min > 1.6e12 and x_min <= min(r["first"] for r in first) * 1000, x_min

    # the live query log: a new query appears without reload
    page.goto(f"{base}/queries")
    page.evaluate("window.notReloaded = true")
    m.query("alias.example.test")
    expect(page.locator("#results-body tr").first).to_contain_text("alias.example.test")
    # paused: nothing new; resumed: it comes
    page.click("#live-toggle")
    expect(page.locator("#live-state")).to_have_text("Paused")
    m.query("short.example.test")
    page.wait_for_timeout(3000)
    assert "short.example.test" not in page.inner_text("#results-body")
    page.click("#live-toggle")
    expect(page.locator("#results-body tr").first).to_contain_text("short.example.test")
    assert page.evaluate("window.notReloaded") is True
    page.screenshot(path=str(shots / "console-queries-en.png"), full_page=False)

    # the filters apply to the live rows
    page.goto(f"{base}/queries?name=tcponly")
    m.query("www.example.test")
    m.query("tcponly.example.test")
    expect(page.locator("#results-body tr").first).to_contain_text("tcponly.example.test")
    page.wait_for_timeout(2500)
    assert "www.example.test" not in page.inner_text("#results-body")

    page.goto(f"{base}/")
    expect(page.locator("#top-names .rule-btn").first).to_have_text("Block")
    page.screenshot(path=str(shots / "console-en.png"), full_page=True)

    # the switch: Japanese, remembered
    page.click("#lang-ja")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("header")).to_contain_text("クエリログ")
    page.goto(f"{base}/queries")
    expect(page.locator("h1")).to_have_text("クエリログ")
    page.click("#lang-en")
    expect(page.locator("h1")).to_have_text("Query log")
    ctx.close()

    # a Japanese browser gets Japanese from the login page on
    ctx = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
    page = watch_csp(ctx.new_page())
    page.set_default_timeout(15000)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/")
    expect(page.locator("#login")).to_have_text("ログイン")
    login(page, base)
    expect(page.locator("h1")).to_have_text("概要")
    expect(page.locator("#top-names .rule-btn").first).to_have_text("ブロック")
    assert page.evaluate("Chart.getChart('chart-categories').data.labels").count("botnet-cc") == 1
    page.screenshot(path=str(shots / "console-ja.png"), full_page=True)
    page.goto(f"{base}/queries")
    m.query("www.example.test")
    expect(page.locator("#live-state")).to_contain_text("ライブ表示中")
    expect(page.locator("#results-body tr").first).to_contain_text("www.example.test")
    page.screenshot(path=str(shots / "console-queries-ja.png"), full_page=False)
    ctx.close()
    assert not errors, errors
    assert sorted(os.listdir(shots)) == [
        "console-en.png", "console-ja.png", "console-queries-en.png", "console-queries-ja.png",
    ]  # fmt: skip


def test_rule_dialog_follows_the_api_contract(
    site: tuple[MamoriProcess, int, int, Path], browser: object
) -> None:
    """Block / Allow: the request the dialog sends (JSON body, X-CSRF-Token from the page's
    meta tag) and how it shows the API's answers (a 4xx's error and field; 201), with
    POST /api/v1/rules answered by the documented contract."""
    import json

    from playwright.sync_api import Browser, Route, expect

    assert isinstance(browser, Browser)
    _m, web, _bp, _tmp = site
    base = f"http://127.0.0.1:{web}"
    ctx = browser.new_context(locale="en-US")
    page = watch_csp(ctx.new_page())
    page.set_default_timeout(15000)
    login(page, base)
    sent: list[tuple[dict[str, object], dict[str, str]]] = []
    answers = [
        (422, {"error": "not a domain name: 'bad name'", "field": "name"}),
        (201, {"name": "mx1.example.test", "action": "allow", "subdomains": True,
               "comment": "our mail server", "created": "2026-11-30T12:00:00Z"}),
    ]  # fmt: skip

    def answer(route: Route) -> None:
        req = route.request
        sent.append((json.loads(req.post_data or "{}"), req.headers))
        status, body = answers[len(sent) - 1]
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    page.route("**/api/v1/rules", answer)
    page.goto(f"{base}/queries?name=mx1")
    page.locator("#results-body tr").first.locator(".rule-btn[data-action=allow]").click()
    expect(page.locator("#quick-rule-dialog")).to_be_visible()
    expect(page.locator("#quick-rule-name")).to_have_value("mx1.example.test")
    assert page.is_checked("#quick-rule-allow") and not page.is_checked("#quick-rule-subdomains")
    page.fill("#quick-rule-name", "bad name")
    page.click("#quick-rule-save")
    expect(page.locator("#quick-rule-error")).to_contain_text(
        "not a domain name: 'bad name' (name)"
    )
    expect(page.locator("#quick-rule-dialog")).to_be_visible()
    page.fill("#quick-rule-name", "mx1.example.test")
    page.check("#quick-rule-subdomains")
    page.fill("#quick-rule-comment", "our mail server")
    page.click("#quick-rule-save")
    expect(page.locator("#quick-rule-dialog")).to_be_hidden()
    expect(page.locator("#quick-rule-status")).to_contain_text("Rule saved: Allow mx1.example.test")
    csrf = page.get_attribute('meta[name="csrf"]', "content")
    assert csrf and all(h["x-csrf-token"] == csrf for _b, h in sent)
    assert all(h["content-type"] == "application/json" for _b, h in sent)
    assert sent[1][0] == {"name": "mx1.example.test", "action": "allow", "subdomains": True,
                          "comment": "our mail server"}  # fmt: skip
    # the same buttons on the overview's top lists and the passive DNS results
    page.goto(f"{base}/")
    assert page.locator("#top-names .rule-btn").count() >= 2
    assert page.locator("#top-queried .rule-btn").count() >= 2
    page.goto(f"{base}/pdns?q=www.example.test")
    row = page.locator("#pdns-results tr", has_text="192.0.2.1")
    row.locator(".rule-btn[data-action=block]").first.click()
    expect(page.locator("#quick-rule-name")).to_have_value("www.example.test")
    assert page.is_checked("#quick-rule-block")
    page.click("#quick-rule-cancel")
    expect(page.locator("#quick-rule-dialog")).to_be_hidden()
    ctx.close()


def dig(port: int, name: str) -> str:
    dig_bin = require_binary("dig")
    r = subprocess.run(
        [dig_bin, "@127.0.0.1", "-p", str(port), name, "A", "+time=2", "+tries=1"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    return r.stdout


def test_block_and_allow_from_the_console(
    site: tuple[MamoriProcess, int, int, Path], browser: object
) -> None:
    """Block a name from a query-log row -> NXDOMAIN with EDE 15; allow a name a feed blocks
    from the overview -> it resolves; remove the rule on the Rules page -> blocked again."""
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    m, web, _bp, _tmp = site
    base = f"http://127.0.0.1:{web}"
    ctx = browser.new_context(locale="en-US")
    page = watch_csp(ctx.new_page())
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, base)
    if page.request.get(f"{base}/api/v1/rules").status == 404:
        pytest.skip("POST /api/v1/rules is not there (the rules API, branch i15-rules)")

    # Block, from the query-log row of a name that resolves
    assert "status: NOERROR" in dig(m.port, "short.example.test")
    page.goto(f"{base}/queries?name=short.example.test")
    row = page.locator("#results-body tr", has_text="short.example.test").first
    row.locator(".rule-btn[data-action=block]").click()
    expect(page.locator("#quick-rule-name")).to_have_value("short.example.test")
    page.fill("#quick-rule-comment", "seen in the query log")
    page.click("#quick-rule-save")
    expect(page.locator("#quick-rule-status")).to_contain_text(
        "Rule saved: Block short.example.test"
    )
    assert until(lambda: "status: NXDOMAIN" in dig(m.port, "short.example.test"), 5)
    out = dig(m.port, "short.example.test")
    assert "EDE: 15 (Blocked)" in out, out

    # Allow, from the overview's top blocked names: a name a feed blocks
    assert "status: NXDOMAIN" in dig(m.port, "mx1.example.test")
    page.goto(f"{base}/")
    row = page.locator("#top-names tr", has_text="mx1.example.test")
    row.locator(".rule-btn[data-action=allow]").click()
    expect(page.locator("#quick-rule-allow")).to_be_checked()
    page.fill("#quick-rule-comment", "our mail server")
    page.click("#quick-rule-save")
    expect(page.locator("#quick-rule-status")).to_contain_text("Allow mx1.example.test")
    assert until(lambda: "192.0.2.25" in dig(m.port, "mx1.example.test"), 5)

    # a refused rule: the API's error, naming the field, in the form
    page.goto(f"{base}/queries")
    page.locator("#results-body .rule-btn[data-action=block]").first.click()
    page.fill("#quick-rule-name", "not a name!")
    page.click("#quick-rule-save")
    expect(page.locator("#quick-rule-error")).to_contain_text("(name)")
    page.click("#quick-rule-cancel")

    # the rules on the Rules page; removing the allow -> blocked by the feed again
    page.goto(f"{base}/rules")
    expect(page.locator("#rules")).to_contain_text("short.example.test")
    expect(page.locator("#rules")).to_contain_text("our mail server")
    page.locator("#rules tr", has_text="mx1.example.test").locator("button.remove").click()
    expect(page.locator("#rules")).not_to_contain_text("mx1.example.test")
    assert until(lambda: "status: NXDOMAIN" in dig(m.port, "mx1.example.test"), 5)
    # and the block, through the API with the session's CSRF token
    csrf = page.get_attribute('meta[name="csrf"]', "content")
    assert csrf
    r = page.request.delete(f"{base}/api/v1/rules/short.example.test",
                            headers={"X-CSRF-Token": csrf})  # fmt: skip
    assert r.status in (200, 204), r.text()
    assert until(lambda: "status: NOERROR" in dig(m.port, "short.example.test"), 5)
    ctx.close()
    assert not errors, errors


# the visible text of a page: its lines and table cells, and its placeholders
TEXTS = """[...document.body.innerText.split(/[\\n\\t]/),
            ...[...document.querySelectorAll('[placeholder]')].map(e => e.placeholder)]
           .map(t => t.trim()).filter(t => t)"""


def test_rules_feeds_groups_audit_in_japanese(
    site: tuple[MamoriProcess, int, int, Path], browser: object, tmp_path: Path
) -> None:
    """The Rules, Feeds, Groups and Audit pages in a Japanese browser: no English left but
    the data (names, paths, config values), a rule added and removed with their forms,
    the forms' ids as in English; screenshots in both languages."""
    import re

    from playwright.sync_api import Browser, expect

    from tests.web.test_console_i18n import DATA, SAME

    assert isinstance(browser, Browser)
    _m, web, _bp, tmp = site
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = f"http://127.0.0.1:{web}"
    errors: list[str] = []
    pages = {}
    for locale in ("en-US", "ja-JP"):
        ctx = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        pages[locale] = page = watch_csp(ctx.new_page())
        page.set_default_timeout(15000)
        page.on("pageerror", lambda e: errors.append(str(e)))
        login(page, base)
    ja = pages["ja-JP"]

    # a rule added in Japanese, with the same form ids
    ja.goto(f"{base}/rules")
    expect(ja.locator("h1")).to_have_text("ルール")
    ja.fill("#rule-name", "i18n.example.test")
    ja.select_option("#rule-action", "allow")
    ja.fill("#rule-comment", "日本語のコメント")
    ja.click("#rule-add-go")
    expect(ja.locator("#rules")).to_contain_text("i18n.example.test")
    expect(ja.locator("#rules tr", has_text="i18n.example.test")).to_contain_text("許可")
    ja.fill("#rule-name", "*.bad")
    ja.click("#rule-add-go")
    expect(ja.locator("#rule-error")).to_contain_text("ルールは保存されませんでした")

    data = DATA | {"English | 日本語", "cc", "phish", "cc.txt", "phish.txt", "127.0.0.1"}
    for path in ("/rules", "/rules?audit=i18n.example.test", "/feeds", "/groups", "/audit"):
        texts = {}
        for locale, page in pages.items():
            page.goto(base + path)
            texts[locale] = set(page.evaluate(TEXTS))
            name = re.sub(r"\W+", "-", path.strip("/")) + f"-{locale[:2]}.png"
            page.screenshot(path=str(shots / name), full_page=True)
        left = sorted(
            t for t in texts["en-US"] & texts["ja-JP"]
            if re.search("[A-Za-z]", t) and t not in SAME | data
            and not t.startswith((str(tmp), "{", "user:", "key:", "cli:"))  # paths, audit
            and not re.fullmatch(r"[\w.-]+\.(toml:\d+|example\.test|mamori\.)|\w+\.\w+", t)
        )  # fmt: skip
        assert not left, (path, left)
    expect(ja.locator("h1")).to_have_text("監査ログ")
    expect(ja.locator("#audit")).to_contain_text("rule.add")
    ja.goto(f"{base}/feeds")
    expect(ja.locator("h1")).to_have_text("フィード")
    expect(ja.locator("#feed-cc")).to_contain_text("今すぐ更新")
    ja.goto(f"{base}/groups")
    expect(ja.locator("h1")).to_have_text("クライアントグループ")

    # removed from the Japanese page
    ja.goto(f"{base}/rules")
    ja.locator("#rules tr", has_text="i18n.example.test").locator("button.remove").click()
    expect(ja.locator("#rules")).not_to_contain_text("i18n.example.test")
    for page in pages.values():
        page.context.close()
    assert not errors, errors
    assert len(os.listdir(shots)) == 10
