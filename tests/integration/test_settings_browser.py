"""The Feeds and Groups pages in Debian's Chromium (Playwright): add a feed by uploading
a file, see DNS block its name and the page show its last update and rejected line,
disable it, add and remove a client group. Screenshots go to the test's folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.integration.test_settings_api import UPLOAD, _rcode, _serve
from tests.support.authserver import AuthServer
from tests.support.browser import no_csp_violation, watch_csp
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_csp_violation() -> Iterator[None]:
    """Every page these tests open works under the console's CSP: none reports a violation."""
    with no_csp_violation():
        yield


@pytest.fixture
def browser() -> Iterator[object]:
    chromium = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium, args=["--headless=new", "--no-sandbox", "--disable-gpu"]
        )
        yield b
        b.close()


def test_feeds_and_groups_pages(tmp_path: Path, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    (tmp_path / "upload.txt").write_text(UPLOAD)
    with AuthServer(ZONE, "example.test.") as up:
        m, api = _serve(tmp_path, up)
        toml = m.config.read_bytes()
        try:
            page = watch_csp(browser.new_page())
            page.set_default_timeout(15000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{api.base}/feeds")
            page.fill("#user", "admin")
            page.fill("#password", "a long test password")
            page.click("#login")
            page.wait_for_url(f"{api.base}/feeds")
            expect(page.locator("#feed-mine-toml")).to_contain_text("mamori.toml:")

            # add a feed by uploading a file
            form = page.locator("#add-feed")
            form.locator("input[name=name]").fill("from-browser")
            form.locator("input[name=file]").set_input_files(str(tmp_path / "upload.txt"))
            form.locator("select[name=format]").select_option("domains")
            form.locator("select[name=category]").select_option("phishing")
            form.locator("button").click()
            page.wait_for_url(f"{api.base}/feeds")
            row = page.locator("#feed-from-browser")
            expect(row).to_contain_text("console.toml:")
            expect(row).to_contain_text("phishing")
            assert until(lambda: _rcode(m, "www.example.test") == "NXDOMAIN", 10), m.stderr()
            done = "ok: from-browser: 6 entries"
            assert until(lambda: done in (page.reload() and row.inner_text()))
            rejects = page.locator("#rejects-from-browser")
            rejects.locator("details summary").click()
            expect(rejects.locator("table.rejects")).to_contain_text("not a domain!")
            page.screenshot(path=str(shots / "feeds.png"), full_page=True)

            # disable it
            row.get_by_role("button", name="Disable").click()
            page.wait_for_url(f"{api.base}/feeds")
            expect(page.locator("#feed-from-browser")).to_contain_text("(disabled)")
            assert until(lambda: _rcode(m, "www.example.test") == "NOERROR", 10), m.stderr()

            # a bad value: the page says which field
            form = page.locator("#add-feed")
            form.locator("input[name=name]").fill("second")
            form.locator("input[name=url]").fill("http://127.0.0.1:9/list.txt")
            form.locator("input[name=refresh]").fill("61")
            form.locator("input[name=groups]").fill("nobody")
            form.locator("button").click()
            expect(page.locator("#error")).to_contain_text("no [[group]] named nobody")
            assert page.locator("#error").get_attribute("data-field") == "groups"

            # groups
            page.goto(f"{api.base}/groups")
            form = page.locator("#add-group")
            form.locator("input[name=name]").fill("kids")
            form.locator("input[name=clients]").fill("127.0.0.2, 192.168.1.64/28")
            form.locator("button").click()
            page.wait_for_url(f"{api.base}/groups")
            expect(page.locator("#group-kids")).to_contain_text("127.0.0.2/32, 192.168.1.64/28")
            expect(page.locator("#group-office")).to_contain_text("mamori.toml:")
            page.screenshot(path=str(shots / "groups.png"), full_page=True)
            page.locator("#group-kids").get_by_role("button", name="Remove").click()
            page.wait_for_url(f"{api.base}/groups")
            expect(page.locator("#group-kids")).to_have_count(0)
            assert not errors, errors
            assert m.config.read_bytes() == toml
        finally:
            assert m.stop() == 0, m.stderr()
