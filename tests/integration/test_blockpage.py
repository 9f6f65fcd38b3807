"""The block page: why a name is blocked, in English or Japanese; false-positive reports."""

from __future__ import annotations

import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kw: object) -> None:
        return None


def _get(port: int, host: str, lang: str = "") -> tuple[int, str]:
    headers = {"Host": host, **({"Accept-Language": lang} if lang else {})}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/login.php", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


def _post(port: int, host: str, fields: dict[str, str]) -> int:
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/report", data=data, headers={"Host": host}, method="POST"
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=3) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        with e:
            return e.code


@pytest.fixture
def blockpage(tmp_path: Path) -> Iterator[tuple[MamoriProcess, int]]:
    port = free_port()
    (tmp_path / "phish.txt").write_text("mail.example.test\n")
    extra = (
        "[policy]\nwatch_interval = 0.2\n"
        f'[blockpage]\nenabled = true\naddress = "127.0.0.1"\nlisten = ["127.0.0.1:{port}"]\n'
        f'[[feed]]\nname = "phish"\npath = "{tmp_path / "phish.txt"}"\nformat = "domains"\n'
        'category = "phishing"\naction = "cname:blocked.example.test"\n'
    )
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{up.port}"], extra=extra).start()
        try:
            assert until(lambda: m.query("mail.example.test").answer != [] and any(
                rr.rdtype == 5 for rr in m.query("mail.example.test").answer), 20)  # fmt: skip
            yield m, port
        finally:
            assert m.stop() == 0, m.stderr()


def test_block_page_explains_in_english_and_japanese(blockpage: tuple[MamoriProcess, int]) -> None:
    _m, port = blockpage
    code, html = _get(port, "mail.example.test")
    assert code == 403 and '<html lang="en">' in html
    assert "This site is blocked" in html and "mail.example.test" in html
    assert "phishing (a site that imitates another" in html and ">phish<" in html
    assert re.search(r'id="since">20\d\d-\d\d-\d\d<', html)
    code, html = _get(port, "mail.example.test", "ja,en-US;q=0.8")
    assert code == 403 and '<html lang="ja">' in html
    assert "このサイトはブロックされました" in html and "フィッシング" in html
    _code, html = _get(port, "mail.example.test", "en-GB,ja;q=0.5")
    assert '<html lang="en">' in html


def test_false_positive_report_with_token_and_rate_limit(
    blockpage: tuple[MamoriProcess, int],
) -> None:
    m, port = blockpage
    _code, html = _get(port, "mail.example.test")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert token is not None
    fields = {"name": "mail.example.test", "csrf": token.group(1), "comment": "our mail server!"}
    assert _post(port, "mail.example.test", {**fields, "csrf": "0" * 64}) == 400
    assert _post(port, "mail.example.test", fields) == 303
    db = sqlite3.connect(m.tmp / "reports.sqlite")
    try:
        sql = "SELECT client, name, zone, rule, comment, status FROM reports"
        rows = db.execute(sql).fetchall()
    finally:
        db.close()
    rule = "mail.example.test.phish.feeds.mamori"
    assert rows == [
        ("127.0.0.1", "mail.example.test", "phish.feeds.mamori.", rule, "our mail server!", "open")
    ]
    codes = [_post(port, "mail.example.test", fields) for _ in range(5)]
    assert codes == [303, 303, 303, 303, 429]  # 5 per client per hour
