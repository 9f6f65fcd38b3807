"""The console's Brands page (``/brands``): the watched brands (added and removed as the
REST API does, ``settings_api.Settings``), the look-alikes found with their scores and
pivots (passive DNS, query log), export (CSV, STIX 2.1), and a block in one click: a
local rule (``store/rules.py``, through the REST API's code, audited, in force on every
worker when the page comes back)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mamori.errors import StoreError
from mamori.store.rules import RuleError, check_rule
from mamori.web.api import Api
from mamori.web.apiauth import ApiError, client_address
from mamori.web.brand_api import BrandWatchData
from mamori.web.console import Console
from mamori.web.i18n import N_
from mamori.web.settings_api import Settings

PAGE = 200
EXPIRED = N_("The form expired; try again.")
NOT_ADDED = N_("The brand was not added: %(error)s")
NOT_REMOVED = N_("The brand was not removed: %(error)s")
NOT_BLOCKED = N_("%(name)s was not blocked: %(error)s")
SCANNED = N_("%(names)s names looked at: %(new)s new look-alikes.")
NOT_SCANNED = N_("The scan could not read passive DNS: %(error)s")


class BrandPage:
    def __init__(self, console: Console, api: Api, settings: Settings, data: BrandWatchData):
        self.console = console
        self.api = api
        self.s = settings
        self.data = data

    def routes(self) -> list[Route]:
        return [
            Route("/brands", self.page, methods=["GET"]),
            Route("/brands/add", self.add, methods=["POST"]),
            Route("/brands/remove", self.remove, methods=["POST"]),
            Route("/brands/block", self.block, methods=["POST"]),
            Route("/brands/scan", self.scan, methods=["POST"]),
        ]

    async def page(
        self, request: Request, error: str = "", field: str = "", status: int = 200,
        notice: str = "",
    ) -> Response:  # fmt: skip
        c = self.console
        if not c.session_user(request):
            return c.login_redirect(request)
        brand = request.query_params.get("brand", "").strip()[:64]
        brands = await run_in_threadpool(self.s.brands)
        found, total = await run_in_threadpool(self.data.search, brand or None, None, PAGE, 0)
        matches = [m.as_json() for m in found]

        def blocked() -> set[str]:
            return {str(m["name"]) for m in matches if self.api.rules.get(str(m["name"]))}

        resp = c.render_page(
            request, "brands.html", N_("Brands"), brands=brands, matches=matches, total=total,
            brand=brand, blocked=await run_in_threadpool(blocked), error=error, field=field,
            notice=notice, overlay=self.s.overlay_path,
        )  # fmt: skip
        resp.status_code = status
        return resp

    async def _checked(self, request: Request) -> Response | tuple[str, Any]:
        c = self.console
        user = c.session_user(request)
        if not user:
            return c.login_redirect(request)
        form = await c.checked_form(request)
        if form is None:
            return await self.page(request, c.translate(request, EXPIRED), "", 400)
        return user, form

    async def add(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        user, form = checked
        body: dict[str, Any] = {
            "name": str(form.get("name", "")).strip(),
            "domains": _words(str(form.get("domains", ""))),
        }
        keywords = _words(str(form.get("keywords", "")))
        if keywords:
            body["keywords"] = keywords
        try:
            await self.s.add_brand(f"user:{user}", client_address(request), body)
        except ApiError as e:
            why = self.console.translate(request, NOT_ADDED, error=str(e))
            return await self.page(request, why, e.field or "", e.status)
        return RedirectResponse(f"/brands?brand={quote(body['name'])}", 303)

    async def remove(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        user, form = checked
        try:
            await self.s.remove_brand(f"user:{user}", client_address(request),
                                      str(form.get("name", "")))  # fmt: skip
        except ApiError as e:
            why = self.console.translate(request, NOT_REMOVED, error=str(e))
            return await self.page(request, why, e.field or "", e.status)
        return RedirectResponse("/brands", 303)

    async def block(self, request: Request) -> Response:
        """Block a look-alike and its subdomains for everyone (a local rule)."""
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        user, form = checked
        name, brand = str(form.get("name", "")), str(form.get("brand", ""))[:64]
        doc = {"name": name, "action": "block", "subdomains": True, "groups": [],
               "comment": f"look-alike of brand {brand} (brand watch)"}  # fmt: skip
        try:
            fields = check_rule(doc, {g.name for g in self.api.config().groups})
            await self.api.change(
                lambda: self.api.rules.add(fields, f"user:{user}", client_address(request))
            )
        except (RuleError, ApiError) as e:
            status = e.status if isinstance(e, ApiError) else 422
            why = self.console.translate(request, NOT_BLOCKED, name=name, error=str(e))
            return await self.page(request, why, "name", status)
        return RedirectResponse(f"/brands?brand={quote(brand)}", 303)

    async def scan(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        try:
            result = await run_in_threadpool(self.data.scan)
        except StoreError as e:  # passive DNS cannot answer (ClickHouse away)
            why = self.console.translate(request, NOT_SCANNED, error=str(e))
            return await self.page(request, why, "", 503)
        note = self.console.translate(request, SCANNED, names=f"{result.names:,}",
                                      new=str(len(result.new)))  # fmt: skip
        return await self.page(request, notice=note)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text) if w]
