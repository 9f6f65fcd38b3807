"""The console in English and Japanese: every marked string has its Japanese, every page
renders in Japanese with no English left, the switch overrides Accept-Language."""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

from jinja2 import Environment

import mamori.web
from mamori.web import i18n
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
         "/reports"]  # fmt: skip


def test_pages_in_japanese_leave_no_english(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    with ConsoleServer(cfg) as srv:
        en, ja = Client(srv.base, "en-US,en;q=0.9"), Client(srv.base, "ja-JP,ja;q=0.9,en;q=0.5")
        for c, lang in ((en, "en"), (ja, "ja")):
            _s, page = c.get("/login")
            assert f'<html lang="{lang}">' in page
        assert "ログイン" in ja.get("/login")[1] and "ログイン" not in en.get("/login")[1]
        en.login()
        ja.login()
        for path in PAGES:
            s_en, page_en = en.get(path)
            s_ja, page_ja = ja.get(path)
            assert s_en == s_ja == 200, path
            assert '<html lang="ja">' in page_ja
            same = [t for t in set(texts(page_en)) & set(texts(page_ja))
                    if t not in SAME and re.search("[A-Za-z]", t)]  # fmt: skip
            assert not same, (path, same)
        _s, page = ja.get("/queries")
        assert "クエリログ" in page and "パッシブDNS" in page and "サブドメインも含める" in page
        assert "ライブ表示中" in page


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
