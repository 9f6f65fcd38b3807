"""The console's Feeds and Groups pages: the feeds and groups in force (the running
service's configuration, not the one the console started with), their origin
(the user's TOML file:line, or the console's file) and forms to change them.

The forms post here (session + the form's CSRF token) and make the same
changes as the REST API (``settings_api.Settings``): checked by the config
loader, written to ``<store dir>/console.toml``, audited, applied by a reload.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from mamori.config.feeds import CATEGORIES
from mamori.web.apiauth import ApiError, client_address
from mamori.web.console import Console
from mamori.web.i18n import N_
from mamori.web.settings_api import UPLOAD_FORMATS, Settings, form_feed

# the pages' errors: the reason (the API's message, in English) after a translated lead
EXPIRED = N_("The form expired; try again.")
FEED_NOT_ADDED = N_("The feed was not added: %(error)s")
FEED_NOT_CHANGED = N_("Feed %(name)s was not changed: %(error)s")
GROUP_NOT_ADDED = N_("The group was not added: %(error)s")
GROUP_NOT_CHANGED = N_("Group %(name)s was not changed: %(error)s")


class SettingsPages:
    def __init__(self, console: Console, settings: Settings) -> None:
        self.console = console
        self.s = settings

    def routes(self) -> list[Route]:
        return [
            Route("/feeds", self.feeds),
            Route("/feeds/add", self.feed_add, methods=["POST"]),
            Route("/feeds/{name}/{op}", self.feed_op, methods=["POST"]),
            Route("/groups", self.groups),
            Route("/groups/add", self.group_add, methods=["POST"]),
            Route("/groups/{name}/{op}", self.group_op, methods=["POST"]),
        ]

    # ---------------------------------------------------------------- feeds
    async def feeds(
        self, request: Request, error: str = "", field: str = "", status: int = 200
    ) -> Response:
        if not self.console.session_user(request):
            return self.console.login_redirect(request)
        feeds = await run_in_threadpool(self.s.feeds)

        def stale(f: dict[str, Any]) -> bool:
            last = f["last_good_update"]
            return not last or time.time() - last > 3 * f["refresh"]

        resp = self.console.render_page(
            request, "feeds.html", N_("Feeds"), feeds=feeds, stale=stale, error=error, field=field,
            formats=UPLOAD_FORMATS, categories=CATEGORIES,
            overlay=self.s.overlay_path,
        )  # fmt: skip
        resp.status_code = status
        return resp

    async def feed_add(self, request: Request) -> Response:
        user = self.console.session_user(request)
        if not user:
            return self.console.login_redirect(request)
        try:
            body, content = await form_feed(request)
            form = await request.form()
            if not self.console.csrf_ok(request, form.get("csrf")):
                return await self.feeds(request, self.console.translate(request, EXPIRED), "", 400)
            body.setdefault("enabled", True)
            await self.s.add_feed(f"user:{user}", client_address(request), body, content)
        except ApiError as e:
            why = self.console.translate(request, FEED_NOT_ADDED, error=str(e))
            return await self.feeds(request, why, e.field or "", e.status)
        return RedirectResponse("/feeds", 303)

    async def feed_op(self, request: Request) -> Response:
        user = self.console.session_user(request)
        if not user:
            return self.console.login_redirect(request)
        form = await request.form()
        if not self.console.csrf_ok(request, form.get("csrf")):
            return await self.feeds(request, self.console.translate(request, EXPIRED), "", 400)
        name, op = request.path_params["name"], request.path_params["op"]
        actor, addr = f"user:{user}", client_address(request)
        try:
            if op in ("enable", "disable"):
                body = {"enabled": op == "enable"}
                await self.s.update_feed(actor, addr, name, body, None)
            elif op == "refresh":
                await self.s.refresh(actor, addr, name)
            elif op == "remove":
                await self.s.remove_feed(actor, addr, name)
            else:
                return PlainTextResponse("not found\n", 404)
        except ApiError as e:
            why = self.console.translate(request, FEED_NOT_CHANGED, name=name, error=str(e))
            return await self.feeds(request, why, e.field or "", e.status)
        return RedirectResponse("/feeds", 303)

    # --------------------------------------------------------------- groups
    async def groups(
        self, request: Request, error: str = "", field: str = "", status: int = 200
    ) -> Response:
        if not self.console.session_user(request):
            return self.console.login_redirect(request)
        groups = await run_in_threadpool(self.s.groups)
        resp = self.console.render_page(
            request, "groups.html", N_("Client groups"), groups=groups, error=error, field=field,
            overlay=self.s.overlay_path,
        )  # fmt: skip
        resp.status_code = status
        return resp

    async def _group_form(self, request: Request) -> tuple[str, dict[str, Any]] | Response:
        user = self.console.session_user(request)
        if not user:
            return self.console.login_redirect(request)
        form = await request.form()
        if not self.console.csrf_ok(request, form.get("csrf")):
            return await self.groups(request, self.console.translate(request, EXPIRED), "", 400)
        body: dict[str, Any] = {}
        for key in ("name", "clients", "client_ids"):
            value = str(form.get(key, "")).strip()
            if key == "name":
                body[key] = value
            elif value:
                body[key] = [x for x in value.replace(",", " ").split() if x]
        days = str(form.get("query_log_days", "")).strip()
        if days:
            body["query_log_days"] = int(days) if days.lstrip("-").isdigit() else days
        return f"user:{user}", body

    async def group_add(self, request: Request) -> Response:
        got = await self._group_form(request)
        if isinstance(got, Response):
            return got
        actor, body = got
        try:
            await self.s.put_group(actor, client_address(request), body)
        except ApiError as e:
            why = self.console.translate(request, GROUP_NOT_ADDED, error=str(e))
            return await self.groups(request, why, e.field or "", e.status)
        return RedirectResponse("/groups", 303)

    async def group_op(self, request: Request) -> Response:
        got = await self._group_form(request)
        if isinstance(got, Response):
            return got
        actor, body = got
        name, op = request.path_params["name"], request.path_params["op"]
        try:
            if op == "edit":
                body["name"] = name
                await self.s.put_group(actor, client_address(request), body, name)
            elif op == "remove":
                await self.s.remove_group(actor, client_address(request), name)
            else:
                return PlainTextResponse("not found\n", 404)
        except ApiError as e:
            why = self.console.translate(request, GROUP_NOT_CHANGED, name=name, error=str(e))
            return await self.groups(request, why, e.field or "", e.status)
        return RedirectResponse("/groups", 303)
