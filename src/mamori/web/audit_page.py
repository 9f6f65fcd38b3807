"""The console's audit page (``/audit``): every change made from the console, the REST
API or the CLI (store/audit.py): who, when, what, from where; searchable, paged."""

from __future__ import annotations

import json
import threading
import urllib.parse
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mamori import config as cfgmod
from mamori.store.audit import AuditEntry, AuditLog, audit_path
from mamori.web.i18n import N_

PAGE = 50


class AuditPage:
    """Renders through the console (its login, layout and navigation)."""

    def __init__(self, cfg: cfgmod.Config, console: Any) -> None:
        self.path = audit_path(cfg.store.path.parent)
        self.console = console
        self._log: AuditLog | None = None
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [Route("/audit", self.page)]

    def _entries(self, search: str, before: int | None) -> list[AuditEntry]:
        with self._lock:
            if self._log is None:
                if not self.path.exists():
                    return []  # nothing changed yet: no file made just to read it
                self._log = AuditLog(self.path)
        return self._log.entries(PAGE, before, search)

    async def page(self, request: Request) -> Response:
        console = self.console
        if not console.session_user(request):
            return console.login_redirect(request)  # type: ignore[no-any-return]
        search = request.query_params.get("q", "").strip()[:200]
        before_text = request.query_params.get("before", "")
        before = int(before_text) if before_text.isdigit() else None
        entries = await run_in_threadpool(self._entries, search, before)
        older = None
        if len(entries) == PAGE:
            older = "/audit?" + urllib.parse.urlencode(
                {**({"q": search} if search else {}), "before": entries[-1].id}
            )
        return console.render_page(  # type: ignore[no-any-return]
            request, "audit.html", N_("Audit log"), entries=entries, q=search, older=older,
            detail=lambda d: json.dumps(d, ensure_ascii=False, sort_keys=True),
        )  # fmt: skip
