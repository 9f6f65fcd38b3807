"""The block page: what a user sees when a name was answered with the block address.

Served on ``[blockpage] listen`` (the address your policy answers with, port
80). The ``Host`` header says which name was asked; the running policy says
which rule blocked it, the feeds' provenance since when and why. English or
Japanese by ``Accept-Language``. "Report a false positive" creates a review
item (``reports.sqlite``; `mamori reports list`), at most ``REPORTS_PER_HOUR``
per client address (counted in memory; the report keeps the address as
``[store] client_addresses`` says). Plain HTTP only: over HTTPS the browser expects the real
site's certificate (see docs/howto/see-what-was-blocked.md).

The report form is, with the login form, the only write without a login: its
token binds it to the name and the client address, its body is at most
``REPORT_BYTES``, and the answers carry the security headers (a CSP with no
script at all; the page's one inline stylesheet allowed by its hash).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from mamori import config as cfgmod
from mamori.dnsutil import wire
from mamori.store.privacy import masker
from mamori.web.security import SecurityHeaders, small_form

REPORTS_PER_HOUR = 5
REPORT_BYTES = 16 << 10  # the report form (name, token, a comment of 2000 characters)
TEXT = {
    "en": {
        "title": "This site is blocked",
        "intro": "Your network's DNS firewall stopped the connection to",
        "why": "Why",
        "source": "Listed by",
        "since": "Listed since",
        "reason": "Reason given",
        "todo_title": "What you can do",
        "todo": "Do not enter passwords or payment details on this site. If you reached it "
        "from an e-mail or a message, it may be a scam: tell your IT team. If you think this "
        "is a mistake, report it below; an administrator will review it.",
        "report_label": "Why do you think this is a mistake? (optional)",
        "report_button": "Report a false positive",
        "report_note": "Your report is sent to the administrators of this network.",
        "thanks": "Thank you: your report was sent to the administrators.",
        "categories": {
            "phishing": "phishing (a site that imitates another to steal credentials)",
            "botnet-cc": "botnet command and control (infected devices get their orders here)",
            "malware": "malware distribution",
            "cryptominer": "cryptocurrency mining in the browser",
            "spam": "spam source",
            "adware": "adware",
            "custom": "a local policy of this network",
            "nod": "a newly observed domain: first seen on this network only lately",
        },
        "nod_title": "This site is new",
        "nod_intro": "Your network's DNS firewall has seen this site only lately:",
        "first_seen": "First seen",
        "nod_todo": "Sites that appeared hours ago are often made for phishing or malware and "
        "vanish again. If you did not expect this site, do not go on. If you know it, you may "
        "continue: it is then allowed on this network for a while.",
        "continue_button": "Continue to the site",
        "continue_note": "Continuing allows this domain for everyone on this network for",
        "hours": "hours",
        "allowed": "This site is allowed now. Your browser may still remember the block "
        "address for a minute: reload the page shortly.",
    },
    "ja": {
        "title": "このサイトはブロックされました",
        "intro": "このネットワークの DNS ファイアウォールが次のサイトへの接続を止めました:",
        "why": "理由",
        "source": "登録元",
        "since": "登録日",
        "reason": "登録理由",
        "todo_title": "次にすること",
        "todo": "このサイトでパスワードや支払い情報を入力しないでください。メールやメッセージの"
        "リンクから来た場合は詐欺の可能性があります。情報システム担当者に知らせてください。"
        "誤ってブロックされたと思う場合は、下のフォームで報告してください。管理者が確認します。",
        "report_label": "誤りだと思う理由(任意)",
        "report_button": "誤検知を報告する",
        "report_note": "報告はこのネットワークの管理者に送られます。",
        "thanks": "ありがとうございます。報告を管理者に送りました。",
        "categories": {
            "phishing": "フィッシング(他のサイトを装って認証情報を盗むサイト)",
            "botnet-cc": "ボットネットの指令サーバー(感染した機器が命令を受け取る場所)",
            "malware": "マルウェアの配布",
            "cryptominer": "ブラウザーでの暗号通貨マイニング",
            "spam": "スパムの送信元",
            "adware": "アドウェア",
            "custom": "このネットワークのポリシー",
            "nod": "新しく観測されたドメイン(このネットワークで最近初めて見られたもの)",
        },
        "nod_title": "このサイトは新しいサイトです",
        "nod_intro": "このネットワークの DNS ファイアウォールは次のサイトを最近初めて観測しました:",
        "first_seen": "初観測",
        "nod_todo": "数時間前に現れたサイトは、フィッシングやマルウェアのために作られ、すぐに消える"
        "ことがよくあります。心当たりがない場合は先に進まないでください。よく知っているサイトなら"
        "続行できます。続行すると、しばらくの間このネットワークで許可されます。",
        "continue_button": "サイトへ進む",
        "continue_note": "続行すると、このドメインはこのネットワークの全員に対して"
        "次の時間許可されます:",
        "hours": "時間",
        "allowed": "このサイトは許可されました。ブラウザーがブロック用のアドレスをしばらく"
        "覚えていることがあります。少し待ってからページを再読み込みしてください。",
    },
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, client TEXT NOT NULL, name TEXT NOT NULL,
    zone TEXT NOT NULL, rule TEXT NOT NULL, comment TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open'
);
"""


def reports_path(cfg: cfgmod.Config) -> Path:
    return cfg.store.path.parent / "reports.sqlite"


def language(accept: str | None) -> str:
    """``ja`` when Japanese comes before English in Accept-Language, else ``en``."""
    best, best_q = "en", -1.0
    for part in (accept or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in TEXT and q > best_q:
            best, best_q = lang, q
    return best


class BlockPage:
    def __init__(self, cfg: cfgmod.Config, runtime: Any = None) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.env = Environment(
            loader=PackageLoader("mamori.web", "templates"), autoescape=select_autoescape()
        )
        self.secret = secrets.token_bytes(32)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(reports_path(cfg), timeout=10, check_same_thread=False)
        self.db.executescript(_SCHEMA)
        self.categories = cfgmod.zone_feeds(cfg)
        self.client_text = masker(cfg.store.client_addresses)
        self.recent: dict[str, deque[float]] = {}  # full address -> report times, last hour

    def csp(self) -> str:
        """The block page's Content-Security-Policy: nothing but its own inline
        stylesheet (by its SHA-256) and the report form posting to this listener."""
        source, _f, _u = self.env.loader.get_source(self.env, "blocked.html")  # type: ignore[union-attr]
        m = re.search(r"<style>(.*?)</style>", source, re.S)
        style = base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode() if m else ""
        return (
            f"default-src 'none'; style-src 'sha256-{style}'; img-src 'self'; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/report", self.report, methods=["POST"]),
                Route("/continue", self.continue_to, methods=["POST"]),
                Route("/{path:path}", self.page, methods=["GET", "HEAD"]),
            ],
            middleware=[Middleware(SecurityHeaders, csp=self.csp())],
        )

    # ---------------------------------------------------------------- lookup
    def explain(self, name: str, client: str | None = None) -> dict[str, str]:
        """Which rule blocks *name* now (for *client*: the policy of its groups): zone,
        rule, category, feed, since, reason."""
        out = {"zone": "", "rule": "", "category": "custom", "feed": "", "since": "", "reason": ""}
        policy = self.runtime.policy_for(client or None) if self.runtime is not None else None
        if policy is None:
            return out
        try:
            qname = wire.text_to_name(name).lower()
        except ValueError:
            return out
        match, _ = policy.check_query_typed(None, qname, 1)  # the browser asked for A
        if match is None:
            return out
        out["zone"], out["rule"] = match.rule.zone, match.rule.rule_name
        nod = self.cfg.nod
        if nod.enabled and match.rule.zone == nod.zone:
            out["category"], out["since"] = "nod", self._nod_first_seen(name)
            return out
        feed = self.categories.get(match.rule.zone)
        if feed is not None:
            out["category"], out["feed"] = feed.category, feed.name
            out.update(self._provenance(feed.name, name))
        return out

    def _provenance(self, feed: str, name: str) -> dict[str, str]:
        from mamori.feeds.dataset import FeedDB, db_path

        path = db_path(self.cfg.store.path)
        if not path.exists():
            return {}
        labels = name.rstrip(".").split(".")
        with FeedDB(path) as db:
            for i in range(len(labels) - 1):  # the name itself, then the *. entries above it
                for p in db.provenance(".".join(labels[i:])):
                    if p.feed == feed and p.listed and (i == 0 or p.kind == "wildcard"):
                        since = time.strftime("%Y-%m-%d", time.gmtime(p.first_listed))
                        return {"since": since, "reason": p.reason}
        return {}

    def _nod_first_seen(self, name: str) -> str:
        from mamori.discovery.nod_publish import first_seen

        ts = first_seen(self.cfg, name)
        return "" if ts is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))

    # ---------------------------------------------------------------- pages
    def _csrf(self, name: str, client: str) -> str:
        return hmac.new(self.secret, f"{name}|{client}".encode(), hashlib.sha256).hexdigest()

    async def page(self, request: Request) -> Response:
        host = (request.headers.get("host") or "").split(":")[0].strip().lower().rstrip(".")
        if not host:
            return PlainTextResponse("blocked by the DNS firewall\n", 403)
        lang = language(request.headers.get("accept-language"))
        t = TEXT[lang]
        client = request.client.host if request.client else ""
        why = self.explain(host, client)
        warn = why["category"] == "nod" and self.cfg.nod.action == "warn"
        allowed = False
        if self.cfg.nod.enabled and self.cfg.nod.action == "warn" and not why["zone"]:
            from mamori.discovery.nod_publish import allowed_until

            # continued, but the browser still has the block address: say so
            allowed = warn = allowed_until(self.cfg, host) is not None
            if allowed:
                why["category"], why["zone"] = "nod", self.cfg.nod.zone
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        html = self.env.get_template("blocked.html").render(
            lang=lang,
            t=t,
            name=host,
            category=why["category"],
            category_text=t["categories"].get(why["category"], why["category"]),  # type: ignore[attr-defined]
            source=why["feed"] or why["zone"].rstrip(".") or "-",
            since=why["since"],
            reason=why["reason"],
            csrf=self._csrf(host, client),
            reported=request.query_params.get("reported") == "1",
            warn=warn,
            allowed=allowed,
            next_path=path,
            continue_hours=f"{self.cfg.nod.continue_for / 3600:g}",
        )
        # 403: not the site's content; no caching of someone else's name
        return HTMLResponse(html, 403, headers={"Cache-Control": "no-store"})

    async def report(self, request: Request) -> Response:
        form = await small_form(request, REPORT_BYTES)
        if form is None:
            return PlainTextResponse(f"report over {REPORT_BYTES} bytes\n", 413)
        name = str(form.get("name", ""))[:253].lower()
        comment = str(form.get("comment", ""))[:2000]
        client = request.client.host if request.client else ""
        if not hmac.compare_digest(str(form.get("csrf", "")), self._csrf(name, client)):
            return PlainTextResponse("bad form token\n", 400)
        now = time.time()
        with self.lock:
            for addr in [a for a, t in self.recent.items() if t[-1] <= now - 3600]:
                del self.recent[addr]  # nobody reported for an hour: forget them
            recent = self.recent.setdefault(client, deque())
            while recent and recent[0] <= now - 3600:
                recent.popleft()
            if len(recent) >= REPORTS_PER_HOUR:
                return PlainTextResponse(
                    "too many reports from this address; try again later\n", 429,
                    headers={"Retry-After": "3600"},
                )  # fmt: skip
            recent.append(now)
            why = self.explain(name, client)
            with self.db:
                self.db.execute(
                    "INSERT INTO reports (time, client, name, zone, rule, comment)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (now, self.client_text(client), name, why["zone"], why["rule"], comment),
                )
        return RedirectResponse("/?reported=1", 303)

    async def continue_to(self, request: Request) -> Response:
        """The warning of a newly observed domain ([nod] action = "warn"): continue. The
        domain leaves the NOD zone for [nod] continue_for (discovery/nod_publish.py),
        the policy is compiled again, and the browser goes back to where it was."""
        form = await small_form(request, REPORT_BYTES)
        if form is None:
            return PlainTextResponse(f"form over {REPORT_BYTES} bytes\n", 413)
        name = str(form.get("name", ""))[:253].lower()
        client = request.client.host if request.client else ""
        if not hmac.compare_digest(str(form.get("csrf", "")), self._csrf(name, client)):
            return PlainTextResponse("bad form token\n", 400)
        if self.cfg.nod.action != "warn" or self.explain(name, client)["category"] != "nod":
            return PlainTextResponse("this name is not held by a warning\n", 409)
        from mamori.discovery.nod_publish import allow

        until = await asyncio.to_thread(allow, self.cfg, name, self.client_text(client))
        if until is None:
            return PlainTextResponse("this name is not a newly observed domain\n", 409)
        if self.runtime is not None and self.runtime.zones_changed is not None:
            await self.runtime.zones_changed()  # compiled and in force before the redirect
        target = str(form.get("next", "/"))
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"
        return RedirectResponse(target, 303, headers={"Cache-Control": "no-store"})
