"""The console in English and Japanese: every marked string has its Japanese, every page
renders in Japanese with no English left, the switch overrides Accept-Language."""

from __future__ import annotations

import ast
import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

from jinja2 import Environment

import mamori.web
from mamori.config.feeds import CATEGORIES
from mamori.web import i18n
from mamori.web.settings_api import UPLOAD_FORMATS
from tests.support.console import Client, ConsoleServer, write_config

WEB = Path(mamori.web.__file__).parent
# The block page has its own texts (web/blockpage.py)
NOT_CONSOLE = {"blocked.html"}
# Text that is the same in both languages: names, protocol words, the language switch
SAME = {"mamori", "CSV", "#", "·", "English", "日本語", "admin", "NXDOMAIN", "NODATA",
        "Local-Data", "PASSTHRU", "DROP", "-", "|", "0", "2026-11-28"}  # fmt: skip


def marked() -> set[str]:
    env = Environment(extensions=["jinja2.ext.i18n"])
    out: set[str] = set()
    for path in sorted((WEB / "templates").glob("*.html")):
        if path.name in NOT_CONSOLE:
            continue
        for _line, _func, msg in env.extract_translations(path.read_text()):  # type: ignore[attr-defined]
            if isinstance(msg, str):
                out.add(msg)
    for path in WEB.glob("*.py"):  # N_("...") in the Python code
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "N_"
                and isinstance(node.args[0], ast.Constant)
            ):
                out.add(str(node.args[0].value))
    return out


def test_every_marked_string_has_its_japanese() -> None:
    msgs = marked()
    assert len(msgs) > 90
    missing = sorted(m for m in msgs if m not in i18n.JA)
    assert not missing, missing
    for m in msgs:  # the same placeholders, and Japanese text
        assert sorted(re.findall(r"%\(\w+\)s", m)) == sorted(re.findall(r"%\(\w+\)s", i18n.JA[m]))
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", i18n.JA[m]), (m, i18n.JA[m])


READ = {"placeholder", "title", "data-label", "data-label-queries", "data-label-blocked",
        "data-live", "data-paused", "data-error", "data-pause", "data-resume", "data-msg-saved",
        "data-msg-block", "data-msg-allow", "data-msg-failed", "data-msg-network"}  # fmt: skip


class Text(HTMLParser):
    """Visible text and the attributes people read (placeholder, title)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        for k, v in attrs:
            if v and k in READ and not v.startswith("/"):
                self.parts.append(v.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip and data.strip():
            self.parts.append(data.strip())


def texts(page: str) -> list[str]:
    p = Text()
    p.feed(page)
    return p.parts


PAGES = ["/", "/queries", "/policy?explain=www.example", "/pdns?q=www.example", "/alerts",
         "/reports", "/rules", "/rules?audit=ads.example.test", "/rules?q=nothing", "/feeds",
         "/groups", "/audit", "/audit?q=nothing", "/brands"]  # fmt: skip
# Data the settings pages show as it is: feed categories and formats (config values), the
# examples in placeholders, TOML, and what the test adds (a feed, a group, a rule)
DATA = {*CATEGORIES, *UPLOAD_FORMATS, "URL", "ads.example.com", "my-list", "kids, guests",
        "https://example.org/list.txt", "192.168.1.64/28 fd00::/64", "tablet-1", "[[feed]]",
        "[[rpz]]", "[[dataset]]", 'groups = ["name"]', "local-ads", "list.txt", "kids",
        "kids.rules.mamori.", "ads.example.test", "user:admin", "rule.add",
        "from the test", "STIX 2.1", "Mizuho", "mizuho.co.jp mizuhobank.co.jp",
        "mizuho"}  # fmt: skip
SETTINGS = """[[feed]]
name = "local-ads"
path = "{list}"
format = "domains"
[[group]]
name = "kids"
clients = ["192.168.1.64/28"]
"""


def csrf(page: str) -> str:
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert token, page
    return token.group(1)


def post(c: Client, path: str, form: dict[str, str]) -> tuple[int, str]:
    return c._post(path, urllib.parse.urlencode(form).encode())


def same_text(page_en: str, page_ja: str, data: set[str], tmp: Path) -> list[str]:
    """The English text left in the Japanese page (data shown as it is aside)."""
    return [t for t in set(texts(page_en)) & set(texts(page_ja))
            if t not in SAME and t not in data and re.search("[A-Za-z]", t)
            and not t.startswith((str(tmp), "{"))  # the overlay's path, an audit detail
            and not re.fullmatch(r"m\.toml:\d+", t)]  # fmt: skip


def test_pages_in_japanese_leave_no_english(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("ads.example\n")
    cfg = write_config(tmp_path, SETTINGS.format(list=tmp_path / "list.txt"))
    with ConsoleServer(cfg) as srv:
        en, ja = Client(srv.base, "en-US,en;q=0.9"), Client(srv.base, "ja-JP,ja;q=0.9,en;q=0.5")
        for c, lang in ((en, "en"), (ja, "ja")):
            _s, page = c.get("/login")
            assert f'<html lang="{lang}">' in page
        assert "ログイン" in ja.get("/login")[1] and "ログイン" not in en.get("/login")[1]
        en.login()
        ja.login()
        rule = {"name": "ads.example.test", "action": "block", "comment": "from the test"}
        status, _page = post(en, "/rules/add", {"csrf": csrf(en.get("/rules")[1]), **rule})
        assert status == 200, status
        for path in PAGES:
            s_en, page_en = en.get(path)
            s_ja, page_ja = ja.get(path)
            assert s_en == s_ja == 200, path
            assert '<html lang="ja">' in page_ja
            same = same_text(page_en, page_ja, DATA, tmp_path)
            assert not same, (path, same)
        _s, page = ja.get("/queries")
        assert "クエリログ" in page and "パッシブDNS" in page and "サブドメインも含める" in page
        assert "ライブ表示中" in page
        _s, page = ja.get("/rules?audit=ads.example.test")
        assert "ルール(1 件)" in page and "ads.example.test の変更履歴" in page
        _s, page = ja.get("/feeds")
        assert "local-ads" in page and "今すぐ更新" in page and "フィードを追加" in page
        _s, page = ja.get("/groups")
        assert "<title>クライアントグループ" in page and "グループを追加" in page
        _s, page = ja.get("/audit")
        assert "<title>監査ログ" in page and "rule.add" in page


def test_page_errors_in_japanese(tmp_path: Path) -> None:
    """The pages' errors: a Japanese lead, the API's reason as it is; the API in English."""
    cfg = write_config(tmp_path, SETTINGS.format(list=tmp_path / "list.txt"))
    with ConsoleServer(cfg) as srv:
        en, ja = Client(srv.base, "en"), Client(srv.base, "ja")
        en.login()
        ja.login()
        token = csrf(ja.get("/rules")[1])
        status, page = post(ja, "/rules/add", {"csrf": token, "name": "*.x"})
        assert status == 422 and "ルールは保存されませんでした: name: " in page, page
        status, page = post(en, "/rules/add", {"csrf": csrf(en.get("/rules")[1]), "name": "*.x"})
        assert status == 422 and "The rule was not saved: name: " in page
        status, page = post(ja, "/rules/remove", {"csrf": "stale", "name": "a.example"})
        assert status == 400 and "フォームの有効期限が切れました" in page
        status, page = post(ja, "/groups/add", {"csrf": token, "name": "x", "clients": "nonsense"})
        assert status == 422 and 'data-field="clients"' in page
        assert "グループは追加されませんでした: " in page and "nonsense" in page
        status, page = post(ja, "/groups/kids/edit", {"csrf": "stale"})
        assert status == 400 and "フォームの有効期限が切れました" in page
        status, page = post(ja, "/feeds/local-ads/remove", {"csrf": token})
        assert status == 409 and "フィード local-ads は変更されませんでした: " in page, page
        status, body = ja.request(
            "/api/v1/rules", b'{"name": "*.x"}',
            {"Content-Type": "application/json", "X-CSRF-Token": token},
        )[::2]  # fmt: skip
        assert status == 422 and "wildcards" in body.decode() and "ルール" not in body.decode()


def test_the_switch_overrides_accept_language(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base, "ja")
        c.login()
        _s, page = c.get("/queries")
        assert 'href="/lang/en?next=/queries"' in page and "<title>クエリログ" in page
        status, page = c.get("/lang/en?next=/queries")  # follows the redirect
        assert status == 200 and "<title>Query log · mamori" in page
        assert '<html lang="en">' in page and 'id="lang-ja"' in page
        _s, page = c.get("/lang/ja?next=//evil.example/")  # not an open redirect
        assert "<title>Overview" not in page and "<title>概要" in page
        _s, page = c.get("/lang/xx?next=/")  # unknown: the choice stays
        assert "<title>概要" in page
