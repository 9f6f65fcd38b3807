"""The console's Rules page (``/rules``): the local rules, searched, added and removed,
with the audit entries of a rule. Its forms carry the session's CSRF token; the
changes go through the REST API's code (web/api.py), so they are audited and in
force on every worker when the page comes back.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mamori.store.rules import RuleError, check_rule, rule_name
from mamori.web.api import Api, audit_json
from mamori.web.apiauth import ApiError, client_address
from mamori.web.console import Console
from mamori.web.i18n import N_

PAGE = 100
# the page's errors: the reason (the API's message, in English) after a translated lead
NOT_SAVED = N_("The rule was not saved: %(error)s")
NOT_REMOVED = N_("The rule was not removed: %(error)s")


class RulesPage:
    def __init__(self, console: Console, api: Api) -> None:
        self.console = console
        self.api = api

    def routes(self) -> list[Route]:
        return [
            Route("/rules", self.page, methods=["GET"]),
            Route("/rules/add", self.add, methods=["POST"]),
            Route("/rules/remove", self.remove, methods=["POST"]),
        ]

    def _why(self, request: Request, lead: str, error: str) -> str:
        return self.console.translate(request, lead, error=error)

    async def page(self, request: Request, error: str = "", status: int = 200) -> Response:
        c = self.console
        if not c.session_user(request):
            return c.login_redirect(request)
        q = request.query_params.get("q", "").strip()[:253]
        show = request.query_params.get("audit", "").strip()[:253]
        offset = request.query_params.get("offset", "0")
        start = int(offset) if offset.isdigit() else 0
        rules, total = await run_in_threadpool(self.api.rules.search, q, PAGE, start)
        history: list[dict[str, Any]] = []
        if show:
            entries = await run_in_threadpool(self.api.audit.entries, 100, None, show)
            history = [audit_json(e) for e in entries if e.target == show]
        groups = [g.name for g in self.api.config().groups]
        response = c.render_page(
            request, "rules.html", N_("Rules"), rules=rules, total=total, q=q, offset=start,
            page=PAGE, groups=groups, error=error, show=show, history=history,
        )  # fmt: skip
        response.status_code = status
        return response

    async def _checked(self, request: Request) -> Response | tuple[str, Any]:
        """(user, form) of a logged-in change with the session's CSRF token; else the
        answer: the login page, or this page saying the form expired."""
        c = self.console
        user = c.session_user(request)
        if not user:
            return c.login_redirect(request)
        form = await c.checked_form(request)
        if form is None:
            return await self.page(
                request, c.translate(request, N_("The form expired; try again.")), 400
            )
        return user, form

    async def add(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        user, form = checked
        doc = {
            "name": str(form.get("name", "")),
            "action": str(form.get("action", "block")),
            "subdomains": form.get("subdomains") in ("on", "true", "1"),
            "comment": str(form.get("comment", "")),
            "groups": [str(g) for g in form.getlist("groups") if str(g)],
        }
        try:
            fields = check_rule(doc, {g.name for g in self.api.config().groups})
            await self.api.change(
                lambda: self.api.rules.add(fields, f"user:{user}", client_address(request))
            )
        except RuleError as e:
            return await self.page(request, self._why(request, NOT_SAVED, f"{e.field}: {e}"), 422)
        except ApiError as e:
            return await self.page(request, self._why(request, NOT_SAVED, str(e)), e.status)
        return RedirectResponse(f"/rules?q={quote(fields['name'])}", 303)

    async def remove(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        user, form = checked
        try:
            name = rule_name(str(form.get("name", "")))
        except RuleError as e:
            return await self.page(request, self._why(request, NOT_REMOVED, f"{e.field}: {e}"), 422)
        groups = tuple(g for g in str(form.get("groups", "")).split(",") if g)
        try:
            await self.api.change(
                lambda: self.api.rules.remove(name, f"user:{user}", client_address(request), groups)
            )
        except ApiError as e:
            return await self.page(request, self._why(request, NOT_REMOVED, str(e)), e.status)
        return RedirectResponse("/rules", 303)
