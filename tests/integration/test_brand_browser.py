"""The Brands page in Debian's Chromium (Playwright) against a running ``mamori serve``:
a brand added from the form finds the look-alikes passive DNS holds, and the Block
button makes the resolver answer NXDOMAIN for one at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.web.keys import KeyStore
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
    with no_csp_violation():
        yield


def test_brand_found_and_blocked_from_the_console(tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    from playwright.sync_api import expect, sync_playwright

    store = PdnsSQLite(tmp_path / "pdns.sqlite")  # what captures or the tap recorded
    seen = [1_790_000_000, 1_790_000_100, 4]
    store.write({("rnizuho.com.", 1, "203.0.113.9", ""): seen,
                 ("www.example.org.", 1, "203.0.113.10", ""): list(seen)})  # fmt: skip
    store.close()
    keys = KeyStore(tmp_path / "keys.sqlite")
    keys.add_user("admin", "a long test password")
    keys.close()
    web = free_port()
    base = f"http://127.0.0.1:{web}"
    with AuthServer(ZONE, "example.test.") as up:
        extra = f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\n'
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{up.port}"], extra=extra).start()
        try:
            assert until(lambda: f"console: {base}/" in m.stderr()), m.stderr()
            assert m.query("rnizuho.com").rcode() != 3  # not blocked (the upstream refuses)
            with sync_playwright() as p:
                flags = ["--headless=new", "--no-sandbox", "--disable-gpu"]
                b = p.chromium.launch(executable_path=chromium, args=flags)
                page = watch_csp(b.new_page())
                page.set_default_timeout(15000)
                page.goto(f"{base}/brands")
                page.fill("#user", "admin")
                page.fill("#password", "a long test password")
                page.click("#login")
                page.wait_for_url(f"{base}/brands")
                form = page.locator("#add-brand")
                form.locator("input[name=name]").fill("Mizuho")
                form.locator("input[name=domains]").fill("mizuho.co.jp, mizuhobank.co.jp")
                form.locator("button").click()
                page.wait_for_url(f"{base}/brands?brand=Mizuho")
                expect(page.locator("#brands")).to_contain_text("mizuhobank.co.jp")
                page.click("#scan")
                row = page.locator("tr.match", has_text="rnizuho.com")
                expect(row).to_contain_text("homoglyph")
                expect(row).to_contain_text("203.0.113.9")
                expect(page.locator("#matches")).not_to_contain_text("www.example.org")
                row.locator("button.block").click()
                page.wait_for_url(f"{base}/brands?brand=Mizuho")
                expect(page.locator("tr.match", has_text="rnizuho.com")).to_contain_text("blocked")
                page.screenshot(path=str(tmp_path / "brands.png"), full_page=True)
                b.close()
            assert until(lambda: m.query("www.rnizuho.com").rcode() == 3, 10)  # and below it
        finally:
            assert m.stop() == 0, m.stderr()
