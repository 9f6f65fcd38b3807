"""Feeds and groups edited from the console and the REST API (``/api/v1/feeds``,
``/api/v1/groups``), kept in the console's overlay file, never in the user's TOML.

Every change goes the same way, whoever makes it (API key, console form):

1. the new overlay (``<store dir>/console.toml``, ``config/overlay.py``) is
   built in memory and loaded with the user's TOML by the config loader, with
   the same converters and cross-checks: a bad value is refused (422, the JSON
   error names the field) and nothing is written;
2. an uploaded feed file is written (``<store dir>/feeds/uploads/NAME.txt``),
   then the overlay, each atomically (temporary file, fsync, rename);
3. the change is recorded in the audit log (who, from where, what);
4. the service reloads its configuration as on SIGHUP (``Runtime.reload``):
   the policy reaches every worker within a second.

A feed or group defined in the user's TOML can be switched on/off (feeds:
``[override.feed.NAME] enabled``) but not changed or deleted here (409: edit
the file). Refresh now runs the feed's update child at once, after any update
of the same feed in progress (``Runtime.update_feed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mamori import config as cfgmod
from mamori.config import overlay
from mamori.config.feeds import FORMATS
from mamori.config.load import load_effective
from mamori.errors import ConfigError
from mamori.feeds.dataset import FeedDB, db_path, store_lock
from mamori.feeds.sources import cache_dir
from mamori.store.audit import AuditLog, audit_path
from mamori.store.rules import RuleStore
from mamori.web.apiauth import ApiError, authorize, client_address, json_body
from mamori.web.keys import KeyStore

log = logging.getLogger(__name__)

UPLOAD_LIMIT = 32 << 20  # bytes of an uploaded feed file
REJECTS_SHOWN = 100  # rejected lines of the last update listed per feed
# What a console/API feed may set (``path`` is not: a feed's file is uploaded).
FEED_KEYS = ("name", "url", "format", "category", "refresh", "enabled", "action", "groups",
             "max_bad", "delist_after", "columns")  # fmt: skip
GROUP_KEYS = ("name", "clients", "client_ids", "query_log_days")
BRAND_KEYS = ("name", "domains", "keywords")
UPLOAD_FORMATS = tuple(f for f in FORMATS if f not in ("taxii", "misp"))


@dataclasses.dataclass
class Refresh:
    """The last "refresh now" of a feed (its verdict until the provenance store has it)."""

    started: float
    finished: float = 0.0
    ok: bool | None = None
    error: str = ""


class Settings:
    """The feeds and groups in force and the changes to them (shared by API and pages)."""

    def __init__(self, cfg: cfgmod.Config, runtime: Any = None) -> None:
        self.start_cfg = cfg
        self.runtime = runtime
        self.lock = asyncio.Lock()  # one change at a time (read, check, write, reload)
        self.refreshes: dict[str, Refresh] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._audit: AuditLog | None = None

    # ------------------------------------------------------------- reading
    @property
    def cfg(self) -> cfgmod.Config:
        """The configuration in force (after reloads), not the one the web app started with."""
        current = self.runtime.config if self.runtime is not None else None
        return current if current is not None else self.start_cfg

    @property
    def store_dir(self) -> Path:
        return self.cfg.store.path.parent

    @property
    def overlay_path(self) -> Path:
        return overlay.overlay_path(self.store_dir)

    def audit(self) -> AuditLog:
        if self._audit is None:
            self._audit = AuditLog(audit_path(self.store_dir))
        return self._audit

    def _rules_of_group(self, group: str) -> int:
        return RuleStore(self.audit(), self.cfg).count_for_group(group)

    def provenance(self) -> overlay.Provenance:
        """Where each feed and group comes from (the files as they are on disk now)."""
        try:
            return load_effective(self.cfg.path, resolver=False, quiet=True)[1]
        except ConfigError as e:  # the user's file was broken since: nothing known
            prov = overlay.Provenance(self.overlay_path)
            prov.error = e
            return prov

    def feeds(self) -> list[dict[str, Any]]:
        """Every feed in force: its settings, origin and last update (blocking: sqlite)."""
        cfg, prov = self.cfg, self.provenance()
        status = _feed_status(cfg, [f.name for f in cfg.feeds])
        return [self._feed(f, prov, status.get(f.name, {})) for f in cfg.feeds]

    def feed(self, name: str) -> dict[str, Any]:
        f = self._find_feed(name)
        return self._feed(f, self.provenance(), _feed_status(self.cfg, [name]).get(name, {}))

    def _feed(
        self, f: cfgmod.FeedConfig, prov: overlay.Provenance, status: dict[str, Any]
    ) -> dict[str, Any]:
        origin = prov.origins.get(("feed", f.name))
        uploads = overlay.uploads_dir(self.store_dir)
        out: dict[str, Any] = {
            "name": f.name,
            "format": f.format,
            "category": f.category,
            "url": f.url or None,
            "path": str(f.path) if f.path is not None else None,
            "uploaded": f.path is not None and f.path.parent == uploads,
            "refresh": f.refresh,
            "enabled": f.enabled,
            "action": f.action,
            "groups": list(f.groups),
            "zone": cfgmod.feed_zone(f, self.cfg.store).name,
            "origin": "console" if origin is not None and origin.overlay else "toml",
            "defined_at": str(origin) if origin is not None else str(self.cfg.path),
            "enabled_from_console": prov.overrides.get(f.name),
        }
        out.update(status)
        r = self.refreshes.get(f.name)
        out["refreshing"] = r is not None and not r.finished
        if r is not None and r.finished and r.ok is False and r.error:
            out["refresh_error"] = r.error
        return out

    def groups(self) -> list[dict[str, Any]]:
        cfg, prov = self.cfg, self.provenance()
        return [self._group(g, cfg, prov) for g in cfg.groups]

    def group(self, name: str) -> dict[str, Any]:
        g = next((g for g in self.cfg.groups if g.name == name), None)
        if g is None:
            raise ApiError(404, f"no group named {name}")
        return self._group(g, self.cfg, self.provenance())

    def _group(
        self, g: cfgmod.GroupConfig, cfg: cfgmod.Config, prov: overlay.Provenance
    ) -> dict[str, Any]:
        origin = prov.origins.get(("group", g.name))
        return {
            "name": g.name,
            "clients": list(g.clients),
            "client_ids": list(g.client_ids),
            "query_log_days": g.query_log_days,
            "zones": [z.name for z in cfg.rpz if g.name in z.groups],
            "feeds": [f.name for f in cfg.feeds if g.name in f.groups],
            "datasets": [d.name for d in cfg.datasets if g.name in d.groups],
            "origin": "console" if origin is not None and origin.overlay else "toml",
            "defined_at": str(origin) if origin is not None else str(cfg.path),
        }

    def _find_feed(self, name: str) -> cfgmod.FeedConfig:
        f = next((f for f in self.cfg.feeds if f.name == name), None)
        if f is None:
            raise ApiError(404, f"no feed named {name}")
        return f

    # ------------------------------------------------------------- changes
    def _provenance_for_change(self) -> overlay.Provenance:
        """The provenance, when the console's file can take a change (409 otherwise: it
        has an error the service ignores it for; fix or remove it first)."""
        prov = self.provenance()
        if prov.error is not None:
            raise ApiError(409, f"fix or remove the file first: {prov.error}")
        return prov

    def _read_overlay(self) -> dict[str, Any]:
        try:
            return overlay.read_doc(self.overlay_path)
        except ConfigError as e:
            raise ApiError(409, f"the console's file cannot be read, fix or remove it: {e}") from e

    def _user_defines(self, prov: overlay.Provenance, kind: str, name: str) -> str | None:
        origin = prov.origins.get((kind, name))
        if origin is not None and not origin.overlay:
            return str(origin)
        return None

    def _check(self, doc: dict[str, Any], section: str, index: int | None) -> None:
        """Load the user's TOML with *doc* as the overlay (strict): ApiError 422 naming
        the field at fault, 409 when the user's own file is at fault."""
        try:
            text = overlay.dumps(doc)
        except ValueError as e:
            raise ApiError(422, str(e)) from None
        try:
            load_effective(self.cfg.path, resolver=False, overlay_text=text, strict=True)
        except ConfigError as e:
            if e.path != str(self.overlay_path):
                raise ApiError(409, f"the configuration file has an error: {e}") from None
            field = e.key.rpartition(".")[2] or None
            if e.key.startswith("override."):
                field = "enabled"
            raise ApiError(422, e.message, field) from None

    async def _commit(
        self,
        doc: dict[str, Any],
        actor: str,
        address: str,
        action: str,
        target: str,
        detail: dict[str, Any],
        upload: tuple[Path, bytes] | None = None,
        remove: Path | None = None,
    ) -> bool:
        """Write (upload first, then the overlay), audit, reload; whether it is in force."""

        def write() -> None:
            if upload is not None:
                overlay.write_atomic(upload[0], upload[1])
            overlay.write_doc(self.overlay_path, doc)
            if remove is not None:
                remove.unlink(missing_ok=True)
            self.audit().record(actor, address, action, target, detail)

        await run_in_threadpool(write)
        log.info("%s by %s from %s: %s %s", action, actor, address or "-", target, detail)
        reload = self.runtime.reload if self.runtime is not None else None
        if reload is None:  # `mamori web` alone: in force at the service's next reload
            return False
        await reload()
        return True

    async def add_feed(
        self, actor: str, address: str, body: dict[str, Any], content: bytes | None
    ) -> dict[str, Any]:
        """A new console feed: by URL, or by *content* (an uploaded file)."""
        table = _table(body, FEED_KEYS, "feed")
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "give the feed a name", "name")
        has_url = "url" in table
        if has_url == (content is not None):
            raise ApiError(422, "give exactly one of url or content (an uploaded file)", "url")
        if "format" not in table:
            raise ApiError(422, f"choose a format ({', '.join(FORMATS)})", "format")
        upload: tuple[Path, bytes] | None = None
        if content is not None:
            if table["format"] not in UPLOAD_FORMATS:
                raise ApiError(422, f"an uploaded file: one of {', '.join(UPLOAD_FORMATS)}",
                               "format")  # fmt: skip
            if len(content) > UPLOAD_LIMIT:
                raise ApiError(413, f"the file is over {UPLOAD_LIMIT} bytes", "content")
            rel = f"feeds/uploads/{name}.txt"  # relative to the overlay's directory
            table = {"name": name, "path": rel, **{k: v for k, v in table.items() if k != "name"}}
        async with self.lock:
            prov = await run_in_threadpool(self._provenance_for_change)
            where = self._user_defines(prov, "feed", name)
            if where is not None or any(f.name == name for f in self.cfg.feeds):
                raise ApiError(409, f"feed {name} exists ({where or 'the console'})", "name")
            doc = self._read_overlay()
            feeds = [t for t in doc.get("feed", []) if t.get("name") != name]
            doc["feed"] = [*feeds, table]
            await run_in_threadpool(self._check, doc, "feed", len(doc["feed"]) - 1)
            if content is not None:
                upload = (self.store_dir / str(table["path"]), content)
            detail = {k: v for k, v in table.items() if k != "name"}
            if content is not None:
                detail["bytes"] = len(content)
            applied = await self._commit(doc, actor, address, "feed.add", name, detail, upload)
        applied = applied and any(f.name == name for f in self.cfg.feeds)
        if applied and self.cfg_has_feed(name):
            self.start_refresh(name)  # its first update now, not at the scheduler's next tick
        shown = await run_in_threadpool(self.feed_or_none, name)
        return {**(shown if shown is not None else table), "applied": applied}

    def cfg_has_feed(self, name: str) -> bool:
        return any(f.name == name and f.enabled for f in self.cfg.feeds)

    def feed_or_none(self, name: str) -> dict[str, Any] | None:
        try:
            return self.feed(name)
        except ApiError:
            return None

    async def update_feed(
        self, actor: str, address: str, name: str, body: dict[str, Any], content: bytes | None
    ) -> dict[str, Any]:
        """Change a feed: a TOML one may only be switched on/off (an override)."""
        changes = _table(body, FEED_KEYS, "feed")
        if "name" in changes and changes["name"] != name:
            raise ApiError(422, "a feed cannot be renamed (remove it and add it again)", "name")
        changes.pop("name", None)
        if not changes and content is None:
            raise ApiError(422, "nothing to change", None)
        if "url" in changes and content is not None:
            raise ApiError(422, "give a url or a file (content), not both", "url")
        async with self.lock:
            self._find_feed(name)
            prov = await run_in_threadpool(self._provenance_for_change)
            doc = self._read_overlay()
            where = self._user_defines(prov, "feed", name)
            upload: tuple[Path, bytes] | None = None
            remove: Path | None = None
            if where is not None:
                other = sorted(set(changes) - {"enabled"})
                if other or content is not None:
                    raise ApiError(409, f"feed {name} is defined in {where}: edit it there"
                                   " (only enabled can be changed here)",
                                   other[0] if other else "content")  # fmt: skip
                overrides = doc.setdefault("override", {}).setdefault("feed", {})
                overrides[name] = {"enabled": changes["enabled"]}
                await run_in_threadpool(self._check, doc, "override", None)
                toml_enabled = next(
                    (
                        f.enabled
                        for f in (await run_in_threadpool(self._user_feeds))
                        if f.name == name
                    ),
                    True,
                )
                if changes["enabled"] is toml_enabled:
                    del overrides[name]  # as the file says: no override left
                    if not overrides:
                        del doc["override"]["feed"]
                    if not doc["override"]:
                        del doc["override"]
            else:
                tables = doc.get("feed", [])
                i = next((i for i, t in enumerate(tables) if t.get("name") == name), None)
                if i is None:
                    raise ApiError(409, f"feed {name} is not in the console's file")
                table = {**tables[i], **changes}
                if "url" in changes and table.pop("path", None) is not None:
                    remove = self._upload_of(tables[i])  # by URL now: the upload goes
                if content is not None:
                    if len(content) > UPLOAD_LIMIT:
                        raise ApiError(413, f"the file is over {UPLOAD_LIMIT} bytes", "content")
                    table.pop("url", None)
                    table["path"] = f"feeds/uploads/{name}.txt"
                    upload = (self.store_dir / table["path"], content)
                tables[i] = table
                await run_in_threadpool(self._check, doc, "feed", i)
            detail = dict(changes)
            if content is not None:
                detail["bytes"] = len(content)
            applied = await self._commit(
                doc, actor, address, "feed.update", name, detail, upload, remove
            )
        if content is not None and applied and self.cfg_has_feed(name):
            self.start_refresh(name)
        return {**self.feed(name), "applied": applied}

    def _upload_of(self, table: dict[str, Any]) -> Path | None:
        """The uploaded file of a console feed's table (None: not an upload)."""
        path = table.get("path")
        if not isinstance(path, str):
            return None
        full = self.store_dir / path
        return full if full.parent == overlay.uploads_dir(self.store_dir) else None

    def _user_feeds(self) -> tuple[cfgmod.FeedConfig, ...]:
        """The user's TOML feeds alone (an override compared with what the file says)."""
        from mamori.config.load import loads_effective, read_config_text

        return loads_effective(
            read_config_text(self.cfg.path), self.cfg.path, resolver=False, overlay_text=""
        )[0].feeds

    async def remove_feed(self, actor: str, address: str, name: str) -> None:
        async with self.lock:
            self._find_feed(name)
            prov = await run_in_threadpool(self._provenance_for_change)
            where = self._user_defines(prov, "feed", name)
            if where is not None:
                raise ApiError(409, f"feed {name} is defined in {where}: remove it there"
                               " (or disable it here)")  # fmt: skip
            doc = self._read_overlay()
            tables = doc.get("feed", [])
            gone = [t for t in tables if t.get("name") == name]
            if not gone:
                raise ApiError(409, f"feed {name} is not in the console's file")
            doc["feed"] = [t for t in tables if t.get("name") != name]
            used = [d.name for d in self.cfg.datasets if name in d.feeds]
            used += [b.zone for b in self.cfg.dnsbl if name in b.feeds]
            if used:
                raise ApiError(409, f"feed {name} is used by {', '.join(used)}")
            await run_in_threadpool(self._check, doc, "feed", None)
            remove = self._upload_of(gone[0])
            await self._commit(doc, actor, address, "feed.remove", name, {}, remove=remove)
            # no longer in the configuration: its compiled zone and what was kept about
            # it go too (a feed added again under this name starts empty), after an
            # update of it in progress (which would record its entries again)
            lock = self.runtime.feed_lock if self.runtime is not None else None
            async with lock(name) if lock is not None else contextlib.nullcontext():
                await run_in_threadpool(self._forget_feed, name)

    def _forget_feed(self, name: str) -> None:
        store = self.cfg.store
        zone = cfgmod.feed_zone(cfgmod.FeedConfig(name=name), store).file
        assert zone is not None
        cache = cache_dir(store)  # the HTTP cache of a URL feed (ETag, body)
        with store_lock(store.path), FeedDB(db_path(store.path)) as db:  # not mid-write
            for path in (zone, zone.with_suffix(".entries"), cache / f"{name}.data",
                         cache / f"{name}.meta"):  # fmt: skip
                path.unlink(missing_ok=True)
            db.forget(name)
        removed = self.runtime.feed_removed if self.runtime is not None else None
        if removed is not None:  # added again later: updated at once, as a new feed
            removed(name)

    async def refresh(self, actor: str, address: str, name: str) -> dict[str, Any]:
        f = self._find_feed(name)
        if not f.enabled:
            raise ApiError(409, f"feed {name} is disabled: enable it first")
        if self.runtime is None or self.runtime.update_feed is None:
            raise ApiError(409, "feeds are updated by mamori serve (this server does not run it)")
        await run_in_threadpool(self.audit().record, actor, address, "feed.refresh", name, {})
        self.start_refresh(name)
        return {"name": name, "refreshing": True}

    def start_refresh(self, name: str) -> None:
        if self.runtime is None or self.runtime.update_feed is None:
            return
        state = Refresh(time.time())
        self.refreshes[name] = state

        async def run() -> None:
            try:
                verdict = await self.runtime.update_feed(name)
                state.ok = bool(verdict.get("ok"))
                state.error = str(verdict.get("error", ""))
            except Exception as e:  # the service goes on; the page says so
                log.exception("feed %s: refresh failed", name)
                state.ok, state.error = False, str(e)
            state.finished = time.time()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def put_group(
        self, actor: str, address: str, body: dict[str, Any], name: str | None = None
    ) -> dict[str, Any]:
        """Add (*name* None) or replace a console group."""
        table = _table(body, GROUP_KEYS, "group")
        if name is not None and table.setdefault("name", name) != name:
            raise ApiError(422, "a group cannot be renamed (remove it and add it again)", "name")
        gname = table.get("name")
        if not isinstance(gname, str) or not gname:
            raise ApiError(422, "give the group a name", "name")
        if "clients" not in table and "client_ids" not in table:
            raise ApiError(422, 'list its clients = ["CIDR", ...] and/or client_ids', "clients")
        async with self.lock:
            prov = await run_in_threadpool(self._provenance_for_change)
            where = self._user_defines(prov, "group", gname)
            exists = any(g.name == gname for g in self.cfg.groups)
            if where is not None:
                raise ApiError(409, f"group {gname} is defined in {where}: edit it there", "name")
            if name is None and exists:
                raise ApiError(409, f"group {gname} exists", "name")
            if name is not None and not exists:
                raise ApiError(404, f"no group named {gname}")
            doc = self._read_overlay()
            tables = doc.get("group", [])
            i = next((i for i, t in enumerate(tables) if t.get("name") == gname), None)
            if i is None:
                tables.append(table)
                i = len(tables) - 1
            else:
                tables[i] = table
            doc["group"] = tables
            await run_in_threadpool(self._check, doc, "group", i)
            action = "group.add" if name is None else "group.update"
            detail = {k: v for k, v in table.items() if k != "name"}
            applied = await self._commit(doc, actor, address, action, gname, detail)
        return {**self.group(gname), "applied": applied}

    async def remove_group(self, actor: str, address: str, name: str) -> None:
        async with self.lock:
            await run_in_threadpool(self._provenance_for_change)
            g = await run_in_threadpool(self.group, name)
            if g["origin"] == "toml":
                raise ApiError(
                    409, f"group {name} is defined in {g['defined_at']}: remove it there"
                )
            # the group's local-rules zone comes and goes with it; its rules must go first
            used = [z for z in g["zones"] if not z.endswith(".rules.mamori.")] + g["datasets"]
            if used:
                raise ApiError(409, f"group {name} is used by {', '.join(used)}")
            rules = await run_in_threadpool(self._rules_of_group, name)
            if rules:
                raise ApiError(409, f"group {name} has {rules} local rule(s): remove them first")
            doc = self._read_overlay()
            doc["group"] = [t for t in doc.get("group", []) if t.get("name") != name]
            await run_in_threadpool(self._check, doc, "group", None)
            await self._commit(doc, actor, address, "group.remove", name, {})

    # --------------------------------------------------------------- brands
    def brands(self) -> list[dict[str, Any]]:
        """The [[brand]]s in force, with their origin (the user's TOML or the console's)."""
        cfg, prov = self.cfg, self.provenance()
        out = []
        for b in cfg.brands:
            origin = prov.origins.get(("brand", b.name))
            out.append({
                "name": b.name,
                "domains": list(b.domains),
                "keywords": list(b.words()),
                "origin": "console" if origin is not None and origin.overlay else "toml",
                "defined_at": str(origin) if origin is not None else str(cfg.path),
            })  # fmt: skip
        return out

    def brand(self, name: str) -> dict[str, Any]:
        """The brand in force named *name* (names ignore case); ApiError 404."""
        b = next((b for b in self.brands() if b["name"].casefold() == name.casefold()), None)
        if b is None:
            raise ApiError(404, f"no brand named {name}")
        return b

    async def add_brand(self, actor: str, address: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new console [[brand]] (checked by the config loader, kept in the overlay)."""
        table = _table(body, BRAND_KEYS, "brand")
        bname = table.get("name")
        if not isinstance(bname, str) or not bname:
            raise ApiError(422, "give the brand a name", "name")
        if "domains" not in table:
            raise ApiError(422, 'list the brand\'s domains = ["example.com"]', "domains")
        async with self.lock:
            prov = await run_in_threadpool(self._provenance_for_change)
            fold = bname.casefold()  # brand names ignore case: Mizuho is MIZUHO
            where = next((str(o) for (kind, n), o in prov.origins.items()
                          if kind == "brand" and n.casefold() == fold and not o.overlay),
                         None)  # fmt: skip
            if where is not None:
                raise ApiError(409, f"brand {bname} is defined in {where}: edit it there", "name")
            twin = next((b.name for b in self.cfg.brands if b.name.casefold() == fold), None)
            if twin is not None:
                also = "" if twin == bname else f" (as {twin}: brand names ignore case)"
                raise ApiError(409, f"brand {bname} exists{also}", "name")
            doc = self._read_overlay()
            tables = [t for t in doc.get("brand", [])
                      if str(t.get("name", "")).casefold() != fold]  # fmt: skip
            doc["brand"] = [*tables, table]
            await run_in_threadpool(self._check, doc, "brand", len(tables))
            detail = {k: v for k, v in table.items() if k != "name"}
            applied = await self._commit(doc, actor, address, "brand.add", bname, detail)
        wake = getattr(self.runtime, "brand_wake", None)
        if applied and wake is not None:
            wake()
        effective = next((b for b in self.brands() if b["name"] == bname), None)
        if effective is None:  # not in force yet (``mamori web`` alone: the next reload)
            effective = {"name": bname, "domains": [], "keywords": [], "origin": "console",
                         "defined_at": str(self.overlay_path), **detail}  # fmt: skip
        return {**effective, "applied": applied}

    async def remove_brand(self, actor: str, address: str, name: str) -> None:
        async with self.lock:
            await run_in_threadpool(self._provenance_for_change)
            b = await run_in_threadpool(self.brand, name)
            name = b["name"]
            if b["origin"] == "toml":
                raise ApiError(
                    409, f"brand {name} is defined in {b['defined_at']}: remove it there"
                )
            doc = self._read_overlay()
            doc["brand"] = [t for t in doc.get("brand", []) if t.get("name") != name]
            if not doc["brand"]:
                del doc["brand"]
            await run_in_threadpool(self._check, doc, "brand", None)
            await self._commit(doc, actor, address, "brand.remove", name, {})


def _table(body: dict[str, Any], keys: tuple[str, ...], section: str) -> dict[str, Any]:
    """The body's keys as a TOML table: known keys, TOML-writable values (the values
    themselves are checked by the loader's converters)."""
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k not in keys:
            raise ApiError(422, f"unknown key (known: {', '.join(keys)})", k)
        if (
            v is None
            or isinstance(v, dict)
            or (isinstance(v, list) and not all(isinstance(x, (str, int, float)) for x in v))
        ):
            raise ApiError(422, f"not a value for [[{section}]] {k}", k)
        if isinstance(v, float) and not math.isfinite(v):
            raise ApiError(422, "not a number", k)
        try:
            overlay.dumps({section: [{k: v}]})
        except ValueError as e:
            raise ApiError(422, str(e), k) from None
        out[k] = v
    return out


def _feed_status(cfg: cfgmod.Config, names: list[str]) -> dict[str, dict[str, Any]]:
    """The feeds' last update (time, ok, why, entries) and its rejected lines, from
    the provenance store (``feeds/dataset.py``), read-only."""
    from mamori.feeds.dataset import db_path

    path = db_path(cfg.store.path)
    out: dict[str, dict[str, Any]] = {
        n: {"last_update": None, "last_good_update": None, "entries": 0, "rejected": []}
        for n in names
    }
    if not path.exists():
        return out
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        for n in names:
            row = db.execute(
                "SELECT at, ok, source, summary, entries, rejected FROM updates WHERE feed = ?"
                " ORDER BY at DESC, rowid DESC LIMIT 1",
                (n,),
            ).fetchone()
            if row is not None:
                at, ok, source, summary, entries, rejected = row
                out[n]["last_update"] = {
                    "time": at, "ok": bool(ok), "source": source, "summary": summary,
                    "entries": entries, "rejected": rejected,
                    "why": "" if ok else summary,
                }  # fmt: skip
            (out[n]["last_good_update"],) = db.execute(
                "SELECT max(at) FROM updates WHERE feed = ? AND ok = 1", (n,)
            ).fetchone()
            (out[n]["entries"],) = db.execute(
                "SELECT count(*) FROM entries WHERE feed = ? AND listed = 1 AND rule = 0", (n,)
            ).fetchone()
            out[n]["rejected"] = [
                {"line": line, "text": text, "reason": why}
                for line, text, why in db.execute(
                    "SELECT line, text, reason FROM rejects WHERE feed = ? ORDER BY line LIMIT ?",
                    (n, REJECTS_SHOWN),
                )
            ]
    except sqlite3.Error as e:  # a store from an older version, or busy: shown as unknown
        log.warning("feed status: %s", e)
    finally:
        db.close()
    return out


# ------------------------------------------------------------------ the REST API
class SettingsApi:
    """``/api/v1/feeds`` and ``/api/v1/groups`` (API key, or console session + CSRF)."""

    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self.s = settings
        self.keys = keys

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/feeds", self.feeds, methods=["GET", "POST"]),
            Route("/api/v1/feeds/{name}", self.feed, methods=["GET", "PATCH", "DELETE"]),
            Route("/api/v1/feeds/{name}/refresh", self.refresh, methods=["POST"]),
            Route("/api/v1/groups", self.groups, methods=["GET", "POST"]),
            Route("/api/v1/groups/{name}", self.group, methods=["GET", "PUT", "DELETE"]),
        ]

    async def _who(self, request: Request) -> tuple[str, str]:
        return await authorize(request, self.keys), client_address(request)

    async def feeds(self, request: Request) -> Response:
        try:
            actor, addr = await self._who(request)
            if request.method == "GET":
                return JSONResponse({"feeds": await run_in_threadpool(self.s.feeds)})
            body, content = await _feed_body(request)
            out = await self.s.add_feed(actor, addr, body, content)
            return JSONResponse(out, 201)
        except ApiError as e:
            return e.response()

    async def feed(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            actor, addr = await self._who(request)
            if request.method == "GET":
                return JSONResponse(await run_in_threadpool(self.s.feed, name))
            if request.method == "DELETE":
                await self.s.remove_feed(actor, addr, name)
                return Response(status_code=204)
            body, content = await _feed_body(request)
            return JSONResponse(await self.s.update_feed(actor, addr, name, body, content))
        except ApiError as e:
            return e.response()

    async def refresh(self, request: Request) -> Response:
        try:
            actor, addr = await self._who(request)
            out = await self.s.refresh(actor, addr, request.path_params["name"])
            return JSONResponse(out, 202)
        except ApiError as e:
            return e.response()

    async def groups(self, request: Request) -> Response:
        try:
            actor, addr = await self._who(request)
            if request.method == "GET":
                return JSONResponse({"groups": await run_in_threadpool(self.s.groups)})
            out = await self.s.put_group(actor, addr, await json_body(request))
            return JSONResponse(out, 201)
        except ApiError as e:
            return e.response()

    async def group(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            actor, addr = await self._who(request)
            if request.method == "GET":
                return JSONResponse(await run_in_threadpool(self.s.group, name))
            if request.method == "DELETE":
                await self.s.remove_group(actor, addr, name)
                return Response(status_code=204)
            body = await json_body(request)
            return JSONResponse(await self.s.put_group(actor, addr, body, name))
        except ApiError as e:
            return e.response()


async def _feed_body(request: Request) -> tuple[dict[str, Any], bytes | None]:
    """A feed's fields and its uploaded file: JSON (``content``: the file's text) or
    multipart/form-data (the fields, and the file in ``file``)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return await form_feed(request)
    body = await json_body(request, UPLOAD_LIMIT + (1 << 20))
    content = body.pop("content", None)
    if content is not None and not isinstance(content, str):
        raise ApiError(422, "the file's text, as a string", "content")
    return body, content.encode("utf-8") if content is not None else None


async def form_feed(request: Request) -> tuple[dict[str, Any], bytes | None]:
    """A feed from a form (the console's, or multipart/form-data to the API): text
    fields as strings, ``enabled`` "true"/"false"/"on", ``refresh`` a number."""
    try:
        form = await request.form(max_files=1, max_fields=50, max_part_size=UPLOAD_LIMIT + 1)
    except Exception as e:  # malformed multipart, or a part over the limit
        raise ApiError(400, f"bad form: {e}") from None
    body: dict[str, Any] = {}
    content: bytes | None = None
    for k, v in form.multi_items():
        if k in ("csrf", "next"):
            continue
        if isinstance(v, UploadFile):
            if k != "file":
                raise ApiError(422, "the file goes in the field named file", k)
            data = await v.read(UPLOAD_LIMIT + 1)
            if data or v.filename:
                content = data
            continue
        if v == "" and k not in ("name", "format"):
            continue
        if k == "groups":
            body.setdefault("groups", []).extend(x.strip() for x in v.split(",") if x.strip())
        elif k in ("enabled",):
            body[k] = v.lower() in ("true", "on", "1", "yes")
        elif k in ("refresh", "delist_after"):
            body[k] = int(v) if v.strip().isdigit() else v
        elif k == "max_bad":
            try:
                body[k] = float(v)
            except ValueError:
                body[k] = v
        else:
            body[k] = v
    return body, content
