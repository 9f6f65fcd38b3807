"""What the console pages show, read from the stores (read-only connections per request)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mamori import config as cfgmod
from mamori.store.base import QUERY_COLUMNS, QueryFilter, QueryLogReader
from mamori.store.querylog_open import open_query_reader

__all__ = ["QUERY_COLUMNS", "ConsoleData", "QueryFilter", "categories"]

INFECTED = ("botnet-cc", "malware")
TOP_QUERIED_SCAN = 50_000  # "top queried names": among the newest logged queries (24 h)
PAGE = 50
# a query row's fields by name (rows are tuples in QUERY_COLUMNS order); "group": the
# client's [[group]] names, comma-joined ("" when none); "device": the name a client gave
# itself (DoH path, DoT/DoQ server name, EDNS client MAC; "" when none); "node": the
# [server] node_name that logged it
QUERY_FIELD = {
    **{c: i for i, c in enumerate(QUERY_COLUMNS)},
    "group": QUERY_COLUMNS.index("client_group"),
}
# Blocks of a zone that has no category are counted under this prefix and the zone's name
ZONE_LABEL = "zone: "


def _ro(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    db.execute("PRAGMA query_only = 1")
    return db


def categories(cfg: cfgmod.Config) -> dict[str, str]:
    """Policy zone name -> category: a feed's ``category``; a dataset's when it has one;
    ``newly-observed`` for the ``[nod]`` zone."""
    out = {z: f.category for z, f in cfgmod.zone_feeds(cfg).items() if f.category}
    if cfg.nod.enabled:  # newly observed domains ([nod]) are a category of their own
        out[cfg.nod.zone] = "newly-observed"
    for ds in cfg.datasets:
        cats = set(ds.categories) | {f.category for f in cfg.feeds if f.name in ds.feeds}
        if len(cats) == 1:
            out[cfgmod.dataset_zone(ds, cfg.store).name] = cats.pop()
    return out


class ConsoleData:
    """*current*: the configuration in force now (after reloads; None: use *cfg*)."""

    def __init__(
        self, cfg: cfgmod.Config, current: Callable[[], cfgmod.Config | None] | None = None
    ) -> None:
        self.cfg = cfg
        self.current = current or (lambda: None)
        self._categories: tuple[cfgmod.Config, dict[str, str]] | None = None
        self._reader: QueryLogReader | None = None

    @property
    def category(self) -> dict[str, str]:
        """Policy zone -> category, of the configuration in force (a reload may add feeds)."""
        cfg = self.current() or self.cfg
        if self._categories is None or self._categories[0] is not cfg:
            self._categories = (cfg, categories(cfg))
        return self._categories[1]

    def label(self, zone: str) -> str:
        """What "blocks by category" calls a zone's blocks: its category, else ``zone: NAME``."""
        return self.category.get(zone) or ZONE_LABEL + zone.rstrip(".")

    @property
    def reader(self) -> QueryLogReader:
        """The query log's reads (``[store] path`` or ``url``), opened at first use."""
        if self._reader is None:
            self._reader = open_query_reader(self.cfg)
        return self._reader

    # ------------------------------------------------------------- overview
    def overview(self, hours: int = 24, now: float | None = None, node: str = "") -> dict[str, Any]:
        """The console's overview of the last *hours* hours (of *node*, "": every node)."""
        now = time.time() if now is None else now
        since = now - hours * 3600
        out: dict[str, Any] = {
            "series": [], "by_category": {}, "blocks_by_category": {}, "top_names": [],
            "top_clients": [], "top_queried": [],
            "infected": [], "queries": 0, "blocked": 0,
        }  # fmt: skip
        r = self.reader
        start = int(since // 3600) * 3600
        rows = r.hourly(start, node)
        out["series"] = [(h, *rows.get(h, (0, 0))) for h in range(start, int(now) + 1, 3600)]
        out["queries"] = sum(n for _h, n, _b in out["series"])
        out["blocked"] = sum(b for _h, _n, b in out["series"])
        # Blocks come from the per-hour aggregates the writer keeps, counted by whole
        # hours like the series: never a scan of the query log.
        by_cat: dict[str, int] = {}
        hourly: dict[str, dict[int, int]] = {}
        for h, zone, n in r.blocks_by_zone(start, node):
            cat = self.label(zone)
            by_cat[cat] = by_cat.get(cat, 0) + n
            row = hourly.setdefault(cat, {})
            row[int(h)] = row.get(int(h), 0) + n
        out["by_category"] = dict(sorted(by_cat.items(), key=lambda kv: -kv[1]))
        starts = [h for h, _n, _b in out["series"]]
        out["blocks_by_category"] = {
            cat: [row.get(h, 0) for h in starts] for cat, row in hourly.items()
        }
        out["top_names"] = r.top_blocked_names(start, node)
        out["top_clients"] = r.top_blocked_clients(start, node)
        out["top_queried"] = r.top_queried(since, TOP_QUERIED_SCAN, node)
        zones = [z for z, c in self.category.items() if c in INFECTED]
        if zones:
            out["infected"] = r.infected(zones, since, node)
        return out

    # ------------------------------------------------------------- query log
    def queries(
        self, f: QueryFilter, before_id: int | None = None, limit: int = PAGE
    ) -> list[tuple[Any, ...]]:
        return self.reader.queries(f, before_id, limit)

    def queries_after(
        self, f: QueryFilter, after_id: int, limit: int = 200
    ) -> list[tuple[Any, ...]]:
        """Rows logged after *after_id* (the live query log), oldest first."""
        return self.reader.queries_after(f, after_id, limit)

    def last_id(self) -> int:
        """The newest query-log row's id the live view starts after (0: none yet)."""
        return self.reader.last_id()

    def queries_csv(self, f: QueryFilter, limit: int = 100_000) -> Iterator[tuple[Any, ...]]:
        yield from self.reader.queries_csv(f, limit)

    def nodes(self) -> list[str]:
        """The node names seen in the query log, sorted."""
        return self.reader.nodes()

    # ------------------------------------------------------------- others
    def policy_hits(self, node: str = "") -> dict[str, tuple[int, float]]:
        """zone -> (hits, last hit UNIX time)."""
        out: dict[str, tuple[int, float]] = {}
        for zone, _t, _a, hits, _f, last in self.reader.policy_hits(node):
            n, la = out.get(zone, (0, 0.0))
            out[zone] = (n + int(hits), max(la, float(last)))
        return out

    def feeds(self) -> list[dict[str, Any]]:
        from mamori.feeds.dataset import db_path

        db = _ro(db_path(self.cfg.store.path))
        out = []
        for feed in self.cfg.feeds:
            row: dict[str, Any] = {"name": feed.name, "category": feed.category,
                                   "source": feed.url or str(feed.path), "enabled": feed.enabled,
                                   "last_ok": None, "last": None, "summary": "never updated",
                                   "ok": None, "entries": 0, "rejected": 0}  # fmt: skip
            if db is not None:
                last = db.execute(
                    "SELECT at, ok, summary, rejected FROM updates WHERE feed = ?"
                    " ORDER BY at DESC, rowid DESC LIMIT 1",
                    (feed.name,),
                ).fetchone()
                if last:
                    row["last"], row["ok"], row["summary"], row["rejected"] = last
                (row["last_ok"],) = db.execute(
                    "SELECT max(at) FROM updates WHERE feed = ? AND ok = 1", (feed.name,)
                ).fetchone()
                (row["entries"],) = db.execute(
                    "SELECT count(*) FROM entries WHERE feed = ? AND listed = 1 AND rule = 0",
                    (feed.name,),
                ).fetchone()
            out.append(row)
        if db is not None:
            db.close()
        return out

    def alerts(self, limit: int = 200, node: str = "") -> list[tuple[Any, ...]]:
        """(time, rule, severity, subject, message, delivered, failed, node), newest
        first: this node's history, or with ``[store] url`` every node's (*node*: one's)."""
        return self.reader.alerts(limit, node)

    def reports(self, limit: int = 200) -> list[tuple[Any, ...]]:
        from mamori.web.blockpage import reports_path

        db = _ro(reports_path(self.cfg))
        if db is None:
            return []
        try:
            return db.execute(
                "SELECT id, time, client, name, zone, rule, comment, status FROM reports"
                " ORDER BY status = 'closed', time DESC LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            db.close()

    def close_report(self, report_id: int) -> bool:
        from mamori.web.blockpage import reports_path

        path = reports_path(self.cfg)
        if not path.exists():
            return False
        db = sqlite3.connect(path, timeout=5)
        try:
            with db:
                n = db.execute(
                    "UPDATE reports SET status = 'closed' WHERE id = ?", (report_id,)
                ).rowcount
            return n > 0
        finally:
            db.close()
