"""The admin console: overview, query log, policy (with "explain"), feeds, passive DNS,
alerts, false-positive reports.

Login with a console user (``mamori users add``; scrypt hashes), throttled per
client address and per user name (``[web] login_failures_per_*``: HTTP 429 with
Retry-After); a signed, HTTP-only, SameSite=Strict session cookie that names a
server-side session (``KeyStore.open_session``: a new one at each login, ended by
logout, a password change, ``[web] session_idle_timeout`` or ``session_max_age``);
every form carries the session's CSRF token. All pages need a login; the APIs use
API keys, ``/metrics`` its own rule. web/security.py adds the security headers.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import itertools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from mamori import config as cfgmod
from mamori import csvsafe
from mamori.discovery.geo import Geo, answer_geo, parse_asn, record_geo, records_on_asn
from mamori.pdns import formats
from mamori.pdns.model import type_text
from mamori.store.pdns_base import Fences
from mamori.web import i18n
from mamori.web.consoledata import QUERY_COLUMNS, ZONE_LABEL, ConsoleData, QueryFilter
from mamori.web.i18n import N_
from mamori.web.keys import KeyStore
from mamori.web.security import (
    ApiKeyThrottle,
    Guard,
    SecurityHeaders,
    SessionCheck,
    small_form,
)

# (path, label): labels are English, translated where shown
NAV = [("/", N_("Overview")), ("/queries", N_("Query log")), ("/policy", N_("Policy")),
       ("/feeds", N_("Feeds")), ("/groups", N_("Groups")), ("/brands", N_("Brands")),
       ("/pdns", N_("Passive DNS")), ("/geo", N_("Countries")), ("/alerts", N_("Alerts")),
       ("/reports", N_("Reports")), ("/rules", N_("Rules")), ("/audit", N_("Audit"))]  # fmt: skip
RCODES = {-1: "DROP", 0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
LOGIN_FORM_BYTES = 16 << 10  # the login form (user, password, token): at most this
LIVE_ROWS = 200  # at most this many new rows per poll of /queries.json


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
        self.data = ConsoleData(cfg, lambda: runtime.config if runtime is not None else None)
        self.envs: dict[str, Environment] = {}
        for lang, _label in i18n.LANGUAGES:
            env = Environment(
                loader=PackageLoader("mamori.web", "templates"),
                autoescape=select_autoescape(),
                extensions=["jinja2.ext.i18n"],
            )
            cat = i18n.Catalogue(lang)
            env.install_gettext_callables(  # type: ignore[attr-defined]
                cat.gettext, cat.ngettext, newstyle=True
            )
            self.envs[lang] = env
        self.env = self.envs["en"]
        self.guard = Guard(cfg.web)
        # the [geo] databases in force (the app factory sets it): AS and country of addresses
        self.geo: Callable[[], Geo | None] = lambda: None

    def current_cfg(self) -> cfgmod.Config:
        """The configuration in force (after SIGHUP reloads), else the one started with."""
        rt = self.runtime
        cfg = rt.config if rt is not None else None
        return cfg if cfg is not None else self.cfg

    def middleware(self) -> list[Middleware]:
        """Outermost first: the security headers (and the cookie's Secure flag over
        HTTPS), the wrong-API-key throttle, the signed session cookie, the server-side
        session check."""
        return [
            Middleware(SecurityHeaders),
            Middleware(ApiKeyThrottle, guard=self.guard),
            Middleware(
                SessionMiddleware,
                secret_key=secret_key(self.cfg),
                session_cookie="mamori_session",
                max_age=int(self.cfg.web.session_max_age),
                same_site="strict",
                https_only=False,  # SecurityHeaders marks it Secure when served over HTTPS
            ),
            Middleware(SessionCheck, keys=self.keys, web=self.cfg.web),
        ]

    def routes(self) -> list[Route]:
        return [
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/favicon.ico", self.favicon),
            Route("/lang/{lang}", self.set_language),
            Route("/queries.json", self.queries_json),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.overview),
            Route("/queries", self.queries),
            Route("/queries.csv", self.queries_csv),
            Route("/policy", self.policy),
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

    def csrf_ok(self, request: Request, given: object) -> bool:
        """Is *given* (a form's ``csrf`` field) the session's CSRF token?"""
        return secrets.compare_digest(str(given or ""), self._csrf(request))

    async def checked_form(self, request: Request) -> Any:
        """The request's form when it carries the session's CSRF token, else None."""
        form = await request.form()
        return form if self.csrf_ok(request, form.get("csrf")) else None

    def session_user(self, request: Request) -> str | None:
        user = request.session.get("user")
        return str(user) if user else None

    def _render(self, request: Request, template: str, **ctx: Any) -> str:
        lang = i18n.choose(request)
        here_full = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return (
            self.envs[lang]
            .get_template(template)
            .render(lang=lang, languages=i18n.LANGUAGES, here_full=here_full, **ctx)
        )

    def translate(self, request: Request, message: str, **values: Any) -> str:
        """*message* in the request's language, ``%(name)s`` filled from *values*."""
        text = i18n.Catalogue(i18n.choose(request)).gettext(message)
        return text % values if values else text

    def render_page(self, request: Request, template: str, title: str, **ctx: Any) -> Response:
        user = self.session_user(request)
        html = self._render(
            request, template, title=self.translate(request, title), nav=NAV, here=request.url.path,
            user=user, csrf=self._csrf(request), fmt=_fmt, **ctx,
        )  # fmt: skip
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def favicon(self, _request: Request) -> Response:
        return FileResponse(
            static_dir() / "favicon.ico", media_type="image/x-icon",
            headers={"Cache-Control": "max-age=86400"},
        )  # fmt: skip

    async def set_language(self, request: Request) -> Response:
        """The language switch: remember the choice in a cookie, back to the page."""
        lang = request.path_params["lang"]
        nxt = request.query_params.get("next", "/")
        target = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
        resp = RedirectResponse(target, 303)
        if lang in dict(i18n.LANGUAGES):
            resp.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="strict",
                            httponly=True)  # fmt: skip
        return resp

    def login_redirect(self, request: Request) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", 303)

    async def login(self, request: Request) -> Response:
        """The login form; POST: throttled (429 + Retry-After) before the password is
        checked, CSRF-checked, then a new session (no session fixation)."""
        error, status, headers = "", 200, {}
        nxt = request.query_params.get("next", "/")
        if request.method == "POST":
            form = await small_form(request, LOGIN_FORM_BYTES)
            if form is None:
                return PlainTextResponse(f"form over {LOGIN_FORM_BYTES} bytes\n", 413)
            user, password = form.get("user", ""), form.get("password", "")
            nxt = form.get("next", "/")
            address = request.client.host if request.client else ""
            if not self.csrf_ok(request, form.get("csrf")):
                error, status = self.translate(request, N_("The form expired; try again.")), 400
            elif wait := self.guard.login_begin(address, user):
                error, status = self.translate(
                    request, N_("Too many failed logins; try again in %(seconds)s seconds."),
                    seconds=wait,
                ), 429  # fmt: skip
                headers["Retry-After"] = str(wait)
            else:
                ok = await run_in_threadpool(self.keys.verify_user, user, password)
                self.guard.login_done(address, user, ok)
                if ok:
                    sid = await run_in_threadpool(
                        self.keys.open_session, user, self.cfg.web.session_max_age
                    )
                    request.session.clear()
                    request.session.update(
                        {"user": user, "sid": sid, "csrf": secrets.token_hex(16)}
                    )
                    target = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
                    return RedirectResponse(target, 303)
                error, status = self.translate(request, N_("Wrong user or password.")), 401
        html = self._render(
            request, "login.html", csrf=self._csrf(request), error=error, next=nxt,
            here=request.url.path,
        )  # fmt: skip
        return HTMLResponse(html, status, headers=headers)

    async def logout(self, request: Request) -> Response:
        """End the session here and server-side (its cookie no longer works)."""
        if await self.checked_form(request) is not None:
            sid = str(request.session.get("sid", ""))
            if sid:
                await run_in_threadpool(self.keys.close_session, sid)
            request.session.clear()
        return RedirectResponse("/login", 303)

    # ------------------------------------------------------------- pages
    async def overview(self, request: Request) -> Response:
        if not self.session_user(request):
            return self.login_redirect(request)
        node = request.query_params.get("node", "").strip()
        o = await run_in_threadpool(self.data.overview, 24, None, node)
        nodes = await run_in_threadpool(self.data.nodes)
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

        def label(key: str) -> str:  # "zone: NAME" in the page's language; categories as they are
            if key.startswith(ZONE_LABEL):
                return self.translate(request, N_("zone: %(name)s"), name=key[len(ZONE_LABEL) :])
            return key

        return self.render_page(
            request, "overview.html", N_("Overview"), o=o, hit_rate=hit_rate,
            upstreams=upstreams, nodes=nodes, node=node,
            by_category={label(k): v for k, v in o["by_category"].items()},
            blocks_by_category={label(k): v for k, v in o["blocks_by_category"].items()},
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
                        p.get("action", ""), p.get("zone", "").strip(), since,
                        device=p.get("device", "").strip(),
                        node=p.get("node", "").strip())  # fmt: skip
        return f, since_text

    async def queries(self, request: Request) -> Response:
        if not self.session_user(request):
            return self.login_redirect(request)
        f, since_text = self._filter(request)
        before = request.query_params.get("before")
        older = int(before) if before and before.isdigit() else None
        last_id = 0
        if older is None:  # the newest page: live, from the newest row the live view has
            # (read first: a row logged meanwhile comes by the live view, never lost)
            last_id = await run_in_threadpool(self.data.last_id)
            rows = await run_in_threadpool(self.data.queries, f, last_id + 1)
        else:
            rows = await run_in_threadpool(self.data.queries, f, older)
        nodes = await run_in_threadpool(self.data.nodes)
        qs = urlencode([(k, v) for k, v in request.query_params.items() if k != "before"])
        return self.render_page(
            request, "queries.html", N_("Query log"), f=f, since=since_text,
            rows=await run_in_threadpool(self._with_geo, [_query_row(r) for r in rows]),
            next_id=rows[-1][0] if len(rows) == 50 else None, query_string=qs,
            live=older is None, last_id=last_id, nodes=nodes,
        )  # fmt: skip

    async def queries_json(self, request: Request) -> Response:
        """The live query log: rows logged after ``after`` (an id), oldest first, with the
        page's filters; each with its table row as the page shows it (``html``)."""
        if not self.session_user(request):
            return JSONResponse({"error": "log in first"}, 401)
        f, _ = self._filter(request)
        after_text = request.query_params.get("after", "")
        if not after_text.isdigit():
            return JSONResponse({"error": "after: a query id", "field": "after"}, 400)
        after = int(after_text)
        rows = await run_in_threadpool(self.data.queries_after, f, after, LIVE_ROWS)
        env = self.envs[i18n.choose(request)]
        macro = env.get_template("_macros.html").module.query_row  # type: ignore[attr-defined]
        out = []
        for row in await run_in_threadpool(self._with_geo, [_query_row(r) for r in rows]):
            row["html"] = str(macro(row))
            out.append(row)
        last = rows[-1][0] if rows else after
        return JSONResponse({"rows": out, "last": last}, headers={"Cache-Control": "no-store"})

    async def queries_csv(self, request: Request) -> Response:
        if not self.session_user(request):
            return PlainTextResponse("log in first\n", 401)
        f, _ = self._filter(request)
        found = self.data.queries_csv(f)
        # the first row read before the headers go: a store that does not answer gets
        # its 503 (app._unavailable), not an empty 200
        first = await run_in_threadpool(next, found, None)

        def rows() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(QUERY_COLUMNS)
            for r in itertools.chain([first] if first is not None else [], found):
                w.writerow(csvsafe.row(_fmt(r[1]) if i == 1 else v for i, v in enumerate(r)))
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
        if not self.session_user(request):
            return self.login_redirect(request)
        node = request.query_params.get("node", "").strip()[:64]
        hits = await run_in_threadpool(self.data.policy_hits, node)
        nodes = await run_in_threadpool(self.data.nodes)
        zones, match = [], None
        rt = self.runtime
        policy = rt.policy if rt is not None else None
        rpz_by_name = {z.name: z for z in self.current_cfg().rpz}
        if rt is not None:
            for z in rt.zones():
                rpz = rpz_by_name.get(z.name)
                source = self.translate(request, N_("file"))
                if rpz is not None and rpz.primary:
                    primaries = ", ".join(str(p) for p in rpz.primary)
                    source = self.translate(request, N_("transfer from %(primaries)s"),
                                     primaries=primaries)  # fmt: skip
                    sub = rt.subs.subs.get(z.name) if rt.subs is not None else None
                    if sub is not None:
                        source += f" ({sub.status.last_result})"
                elif rpz is not None and rpz.feed:
                    source = self.translate(request, N_("feed %(name)s"), name=rpz.feed)
                n, last = hits.get(z.name, (0, 0.0))
                zones.append({"name": z.name, "serial": z.serial, "rules": z.rules,
                              "source": source, "applied": z.applied, "hits": n,
                              "last": _fmt(last)})  # fmt: skip
        explain = request.query_params.get("explain", "").strip().lower().rstrip(".")
        client = request.query_params.get("client", "").strip()
        groups: list[str] = []
        if explain and policy is not None:
            from mamori.dnsutil import wire

            if client and rt is not None:  # the view of the client's groups
                try:
                    client = str(ipaddress.ip_address(client))
                    groups = list(rt.groups_of(client))
                    policy = rt.policy_for(client) or policy
                except ValueError:
                    client = ""
            try:
                found, _ = policy.check_query(client or None, wire.text_to_name(explain).lower())
            except ValueError:
                found = None
            if found is not None:
                action = (
                    self.translate(request, N_("by query type")) if found.typed else found.hit[3]
                )
                match = {"action": action, "rule": found.rule.rule_name,
                         "zone": found.rule.zone,
                         "category": self.data.category.get(found.rule.zone, "")}  # fmt: skip
        # the policy hits in the (fleet's) query log, also of zones this process does not
        # serve: a console of its own (`mamori web`) serves none
        served = {z["name"] for z in zones}
        order = sorted(hits.items(), key=lambda kv: (-kv[1][0], kv[0]))
        logged = [{"name": z, "hits": n, "last": _fmt(last), "here": z in served}
                  for z, (n, last) in order]  # fmt: skip
        return self.render_page(request, "policy.html", N_("Policy"), zones=zones, explain=explain,
                          match=match, client=client, groups=groups, logged=logged,
                          nodes=nodes, node=node)  # fmt: skip

    async def pdns_page(self, request: Request) -> Response:
        if not self.session_user(request):
            return self.login_redirect(request)
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
        return self.render_page(request, "pdns.html", N_("Passive DNS"), q=q, kind=kind, rows=rows,
                          error=error, timeline=timeline, after=after,
                          before=before,
                          geo=await run_in_threadpool(self.geo) is not None)  # fmt: skip

    def _pdns_rows(self, q: str, kind: str, fences: Fences) -> list[dict[str, Any]]:
        from mamori.pdns import query

        store = self.pdns
        geo = self.geo()
        asn = 0
        if kind != "keyword" and q[:2].lower() == "as" and q[2:].strip().isdigit():
            asn = parse_asn(q)  # "AS15169": the names hosted on this AS
        if asn:
            if geo is None:
                raise ValueError("AS lookups need [geo] databases (mmdb or ip2asn)")
            records = records_on_asn(store, geo, asn, fences, limit=500)
        elif kind == "keyword":
            names = store.keyword(q, 200)
            records = [r for n in names for r in store.rrset(n, fences=fences, limit=20)]
            records.sort(key=lambda r: -r.time_last)
        else:
            records = query.name_or_address(store, q, limit=500, fences=fences)
        out = []
        for r in records[:500]:
            g = record_geo(geo, r.rrtype, r.rdata)
            out.append({"rrname": r.rrname, "type": type_text(r.rrtype), "rdata": r.rdata,
                        "time_first": r.time_first, "time_last": r.time_last, "count": r.count,
                        "asn": g.asn if g else None, "as_name": g.as_name if g else "",
                        "country": g.country if g else ""})  # fmt: skip
        return out

    def _with_geo(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Query-log rows with ``geo``: "ADDRESS AS64500 NAME, JP" for each answer address
        whose AS or country is known ([geo])."""
        geo = self.geo()
        for row in rows:
            row["geo"] = [f"{a} {g.label()}" for a, g in answer_geo(geo, row["answer"])]
        return rows

    async def alerts(self, request: Request) -> Response:
        if not self.session_user(request):
            return self.login_redirect(request)
        node = request.query_params.get("node", "").strip()
        rows = await run_in_threadpool(self.data.alerts, 200, node)
        nodes = await run_in_threadpool(self.data.nodes)
        return self.render_page(request, "alerts.html", N_("Alerts"), alerts=rows, nodes=nodes,
                                node=node)  # fmt: skip

    async def reports(self, request: Request) -> Response:
        if not self.session_user(request):
            return self.login_redirect(request)
        rows = await run_in_threadpool(self.data.reports)
        return self.render_page(request, "reports.html", N_("False-positive reports"), reports=rows)

    async def close_report(self, request: Request) -> Response:
        if not self.session_user(request):
            return self.login_redirect(request)
        if await self.checked_form(request) is None:
            return PlainTextResponse("bad form token\n", 400)
        await run_in_threadpool(self.data.close_report, int(request.path_params["rid"]))
        return RedirectResponse("/reports", 303)


def _query_row(r: tuple[Any, ...]) -> dict[str, Any]:
    """A query-log row (QUERY_COLUMNS) as the page and the live log show it."""
    return {
        "id": r[0], "time": _fmt(r[1]), "client": r[2], "qname": r[3], "qtype": type_text(r[4]),
        "rcode": RCODES.get(r[5], str(r[5])), "answer": r[6], "cache": bool(r[7]),
        "zone": r[9], "rule": r[10], "action": r[11], "outcome": r[12],
        "blocked": r[12] in ("blocked", "dropped"),
        "group": r[14] if len(r) > 14 else "",  # the client's [[group]]s (query log v7+)
        "device": r[15] if len(r) > 15 else "",  # the name the client gave itself
        "node": r[16] if len(r) > 16 else "",  # the [server] node_name that logged it
    }  # fmt: skip


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
