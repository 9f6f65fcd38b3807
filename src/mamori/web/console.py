"""The admin console: overview, query log, policy (with "explain"), feeds, passive DNS,
alerts, false-positive reports.

Login with a console user (``mamori users add``; scrypt hashes); a signed,
HTTP-only session cookie; every form carries the session's CSRF token. All
pages need a login; the APIs use API keys, ``/metrics`` its own rule.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from mamori import config as cfgmod
from mamori.pdns import formats
from mamori.pdns.model import type_text
from mamori.store.pdns_sqlite import Fences
from mamori.web.consoledata import QUERY_COLUMNS, ConsoleData, QueryFilter
from mamori.web.keys import KeyStore

NAV = [("/", "Overview"), ("/queries", "Query log"), ("/policy", "Policy"), ("/feeds", "Feeds"),
       ("/pdns", "Passive DNS"), ("/alerts", "Alerts"), ("/reports", "Reports"),
       ("/audit", "Audit")]  # fmt: skip
RCODES = {-1: "DROP", 0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
SESSION_HOURS = 12


def secret_key(cfg: cfgmod.Config) -> str:
    """The session signing key, made once and kept beside the store (mode 0600)."""
    path = cfg.store.path.parent / "web.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _fmt(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t else ""


class Console:
    def __init__(self, cfg: cfgmod.Config, keys: KeyStore, pdns: Any, runtime: Any = None) -> None:
        self.cfg = cfg
        self.keys = keys
        self.pdns = pdns
        self.runtime = runtime
        self.data = ConsoleData(cfg)
        self.env = Environment(
            loader=PackageLoader("mamori.web", "templates"), autoescape=select_autoescape()
        )

    def middleware(self) -> list[Middleware]:
        return [
            Middleware(
                SessionMiddleware,
                secret_key=secret_key(self.cfg),
                session_cookie="mamori_session",
                max_age=SESSION_HOURS * 3600,
                same_site="strict",
                https_only=False,
            )
        ]

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.overview),
            Route("/queries", self.queries),
            Route("/queries.csv", self.queries_csv),
            Route("/policy", self.policy),
            Route("/feeds", self.feeds),
            Route("/pdns", self.pdns_page),
            Route("/alerts", self.alerts),
            Route("/reports", self.reports),
            Route("/reports/{rid:int}/close", self.close_report, methods=["POST"]),
        ]

    # ------------------------------------------------------------- session
    def _csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_hex(16)
        return str(token)

    async def _form_ok(self, request: Request) -> Any:
        form = await request.form()
        if not secrets.compare_digest(str(form.get("csrf", "")), self._csrf(request)):
            return None
        return form

    def _user(self, request: Request) -> str | None:
        user = request.session.get("user")
        return str(user) if user else None

    def _page(self, request: Request, template: str, title: str, **ctx: Any) -> Response:
        user = self._user(request)
        html = self.env.get_template(template).render(
            title=title, nav=NAV, here=request.url.path, user=user, csrf=self._csrf(request),
            fmt=_fmt, **ctx,
        )  # fmt: skip
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def _login_redirect(self, request: Request) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", 303)

    async def login(self, request: Request) -> Response:
        error = ""
        nxt = request.query_params.get("next", "/")
        if request.method == "POST":
            form = await self._form_ok(request)
            if form is None:
                error = "The form expired; try again."
            else:
                user, password = str(form.get("user", "")), str(form.get("password", ""))
                nxt = str(form.get("next", "/"))
                ok = await run_in_threadpool(self.keys.verify_user, user, password)
                if ok:
                    request.session.clear()
                    request.session["user"] = user
                    request.session["csrf"] = secrets.token_hex(16)
                    target = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
                    return RedirectResponse(target, 303)
                error = "Wrong user or password."
        html = self.env.get_template("login.html").render(
            csrf=self._csrf(request), error=error, next=nxt
        )
        return HTMLResponse(html, 200 if not error else 401)

    async def logout(self, request: Request) -> Response:
        if await self._form_ok(request) is not None:
            request.session.clear()
        return RedirectResponse("/login", 303)

    # ------------------------------------------------------------- pages
    async def overview(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        o = await run_in_threadpool(self.data.overview)
        hit_rate, upstreams = "-", "-"
        rt = self.runtime
        if rt is not None and rt.snapshots():
            st = rt.stats()
            hits, total = (
                st.get("cache_hits", 0),
                st.get("cache_hits", 0) + st.get("cache_misses", 0),
            )
            hit_rate = f"{100 * hits / total:.0f}%" if total else "-"
            ups = rt.upstreams()
            upstreams = f"{sum(1 for u in ups if u.up)}/{len(ups)}"
        return self._page(
            request, "overview.html", "Overview", o=o, hit_rate=hit_rate, upstreams=upstreams,
        )  # fmt: skip

    def _filter(self, request: Request) -> tuple[QueryFilter, str]:
        p = request.query_params
        since_text = p.get("since", "")
        since = None
        if since_text:
            try:
                since = float(formats.parse_time(since_text))
            except ValueError:
                since = None
        f = QueryFilter(p.get("client", "").strip(), p.get("name", "").strip(),
                        p.get("action", ""), p.get("zone", "").strip(), since)  # fmt: skip
        return f, since_text

    async def queries(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        f, since_text = self._filter(request)
        before = request.query_params.get("before")
        rows = await run_in_threadpool(
            self.data.queries, f, int(before) if before and before.isdigit() else None
        )
        qs = "&".join(f"{k}={v}" for k, v in request.query_params.items() if k != "before")
        return self._page(
            request, "queries.html", "Query log", f=f, since=since_text, rows=rows,
            next_id=rows[-1][0] if len(rows) == 50 else None, query_string=qs,
            qtype=type_text, rcode=lambda c: RCODES.get(c, str(c)),
        )  # fmt: skip

    async def queries_csv(self, request: Request) -> Response:
        if not self._user(request):
            return PlainTextResponse("log in first\n", 401)
        f, _ = self._filter(request)

        def rows() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(QUERY_COLUMNS)
            for r in self.data.queries_csv(f):
                w.writerow([_fmt(r[1]) if i == 1 else v for i, v in enumerate(r)])
                if buf.tell() > 1 << 16:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        return StreamingResponse(
            rows(), media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="queries.csv"'},
        )  # fmt: skip

    async def policy(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        hits = await run_in_threadpool(self.data.policy_hits)
        zones, match = [], None
        rt = self.runtime
        policy = rt.policy if rt is not None else None
        rpz_by_name = {z.name: z for z in self.cfg.rpz}
        if rt is not None:
            for z in rt.zones():
                rpz = rpz_by_name.get(z.name)
                source = "file"
                if rpz is not None and rpz.primary:
                    source = "transfer from " + ", ".join(str(p) for p in rpz.primary)
                    sub = rt.subs.subs.get(z.name) if rt.subs is not None else None
                    if sub is not None:
                        source += f" ({sub.status.last_result})"
                elif rpz is not None and rpz.feed:
                    source = f"feed {rpz.feed}"
                n, last = hits.get(z.name, (0, 0.0))
                zones.append({"name": z.name, "serial": z.serial, "rules": z.rules,
                              "source": source, "applied": z.applied, "hits": n,
                              "last": _fmt(last)})  # fmt: skip
        explain = request.query_params.get("explain", "").strip().lower().rstrip(".")
        if explain and policy is not None:
            from mamori.dnsutil import wire

            try:
                found, _ = policy.check_query(None, wire.text_to_name(explain).lower())
            except ValueError:
                found = None
            if found is not None:
                action = "by query type" if found.typed else found.hit[3]
                match = {"action": action, "rule": found.rule.rule_name,
                         "zone": found.rule.zone,
                         "category": self.data.category.get(found.rule.zone, "")}  # fmt: skip
        return self._page(request, "policy.html", "Policy", zones=zones, explain=explain,
                          match=match)  # fmt: skip

    async def feeds(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        feeds = await run_in_threadpool(self.data.feeds)
        refresh = {f.name: f.refresh for f in self.cfg.feeds}

        def stale(f: dict[str, Any]) -> bool:
            return not f["last_ok"] or time.time() - f["last_ok"] > 3 * refresh[f["name"]]

        return self._page(request, "feeds.html", "Feeds", feeds=feeds, stale=stale)

    async def pdns_page(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        q = request.query_params.get("q", "").strip()
        kind = request.query_params.get("kind", "auto")
        after = request.query_params.get("after", "").strip()
        before = request.query_params.get("before", "").strip()
        rows: list[dict[str, Any]] = []
        error = ""
        if q:
            try:
                fences = _pdns_fences(after, before)
                rows = await run_in_threadpool(self._pdns_rows, q, kind, fences)
            except ValueError as e:
                error = str(e)
        timeline = [
            {"label": f"{r['rrname']} {r['type']} {r['rdata']}"[:60],
             "first": r["time_first"], "last": r["time_last"]}
            for r in rows[:30]
        ]  # fmt: skip
        return self._page(request, "pdns.html", "Passive DNS", q=q, kind=kind, rows=rows,
                          error=error, timeline=timeline, after=after,
                          before=before)  # fmt: skip

    def _pdns_rows(self, q: str, kind: str, fences: Fences) -> list[dict[str, Any]]:
        from mamori.pdns import query

        store = self.pdns
        if kind == "keyword":
            names = store.keyword(q, 200)
            records = [r for n in names for r in store.rrset(n, fences=fences, limit=20)]
            records.sort(key=lambda r: -r.time_last)
        else:
            records = query.name_or_address(store, q, limit=500, fences=fences)
        return [{"rrname": r.rrname, "type": type_text(r.rrtype), "rdata": r.rdata,
                 "time_first": r.time_first, "time_last": r.time_last, "count": r.count}
                for r in records[:500]]  # fmt: skip

    async def alerts(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        rows = await run_in_threadpool(self.data.alerts)
        return self._page(request, "alerts.html", "Alerts", alerts=rows)

    async def reports(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        rows = await run_in_threadpool(self.data.reports)
        return self._page(request, "reports.html", "False-positive reports", reports=rows)

    async def close_report(self, request: Request) -> Response:
        if not self._user(request):
            return self._login_redirect(request)
        if await self._form_ok(request) is None:
            return PlainTextResponse("bad form token\n", 400)
        await run_in_threadpool(self.data.close_report, int(request.path_params["rid"]))
        return RedirectResponse("/reports", 303)


def _pdns_fences(after: str, before: str) -> Fences:
    """The passive DNS page's "seen on or after" / "seen on or before" fields as dnsdbq's
    ``-A`` / ``-B``: tuples whose life overlaps the window, both ends included (empty
    field: no fence). ValueError naming a value that is not a time."""
    return Fences(
        last_after=formats.parse_time(after) if after else None,
        first_before=formats.parse_time(before) if before else None,
    )


def static_dir() -> Path:
    return Path(__file__).resolve().parent / "static"
