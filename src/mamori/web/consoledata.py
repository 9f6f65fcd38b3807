"""What the console pages show, read from the stores (read-only connections per request)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mamori import config as cfgmod

INFECTED = ("botnet-cc", "malware")
TOP_QUERIED_SCAN = 50_000  # "top queried names": among the newest logged queries (24 h)
PAGE = 50
QUERY_COLUMNS = ("id", "ts", "client", "qname", "qtype", "rcode", "answer", "cache_hit",
                 "upstream", "policy_zone", "policy_rule", "policy_action", "outcome",
                 "reason", "client_group", "device")  # fmt: skip
# a query row's fields by name (rows are tuples in QUERY_COLUMNS order); "group": the
# client's [[group]] names, comma-joined ("" when none); "device": the name a client gave
# itself (DoH path, DoT/DoQ server name, EDNS client MAC; "" when none)
QUERY_FIELD = {
    **{c: i for i, c in enumerate(QUERY_COLUMNS)},
    "group": QUERY_COLUMNS.index("client_group"),
}
# Blocks of a zone that has no category are counted under this prefix and the zone's name
ZONE_LABEL = "zone: "
# Outcomes that are blocks: policy replaced the answer, or sent none (not PASSTHRU, not
# the log-only matches of "disabled" zones)
BLOCKED = "outcome IN ('blocked', 'dropped')"


def _ro(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, check_same_thread=False)
    db.execute("PRAGMA query_only = 1")
    return db


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return bool(
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
    )


@dataclass(frozen=True)
class QueryFilter:
    client: str = ""
    name: str = ""  # substring
    action: str = ""  # "blocked", "allowed", or a policy action
    zone: str = ""
    since: float | None = None
    until: float | None = None
    device: str = ""  # a device name (exact, lowercase)

    def sql(self) -> tuple[str, list[Any]]:
        parts: list[str] = []
        args: list[Any] = []
        if self.client:
            parts.append("client = ?")
            args.append(self.client)
        if self.device:
            parts.append("device = ?")
            args.append(self.device.lower())
        if self.name:
            parts.append("qname LIKE ? ESCAPE '\\'")
            text = self.name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(f"%{text}%")
        if self.action == "blocked":
            parts.append(f"policy_zone != '' AND {BLOCKED}")
        elif self.action == "allowed":
            parts.append(f"NOT ({BLOCKED})")
        elif self.action:
            parts.append("policy_action = ?")
            args.append(self.action)
        if self.zone:
            parts.append("policy_zone = ?")
            args.append(self.zone.rstrip(".") + ".")
        if self.since is not None:
            parts.append("ts >= ?")
            args.append(self.since)
        if self.until is not None:
            parts.append("ts < ?")
            args.append(self.until)
        return (" AND ".join(parts) or "1"), args


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

    def _store(self) -> sqlite3.Connection | None:
        return _ro(self.cfg.store.path)

    # ------------------------------------------------------------- overview
    def overview(self, hours: int = 24, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        since = now - hours * 3600
        out: dict[str, Any] = {
            "series": [], "by_category": {}, "blocks_by_category": {}, "top_names": [],
            "top_clients": [], "top_queried": [],
            "infected": [], "queries": 0, "blocked": 0,
        }  # fmt: skip
        db = self._store()
        if db is None:
            return out
        try:
            start = int(since // 3600) * 3600
            rows = dict(
                (int(h), (n, b))
                for h, n, b in db.execute(
                    "SELECT hour, queries, blocked FROM query_counts WHERE hour >= ?", (start,)
                )
            )
            out["series"] = [(h, *rows.get(h, (0, 0))) for h in range(start, int(now) + 1, 3600)]
            out["queries"] = sum(n for _h, n, _b in out["series"])
            out["blocked"] = sum(b for _h, _n, b in out["series"])
            # Blocks come from the per-hour aggregates the writer keeps (store/sqlite.py),
            # counted by whole hours like the series: never a scan of the query log.
            by_cat: dict[str, int] = {}
            hourly: dict[str, dict[int, int]] = {}
            if not _has_table(db, "block_clients"):  # a store no writer of ours opened yet
                return out
            for h, zone, n in db.execute(
                "SELECT hour, zone, sum(n) FROM block_counts WHERE hour >= ? GROUP BY 1, 2",
                (start,),
            ):
                cat = self.label(zone)
                by_cat[cat] = by_cat.get(cat, 0) + n
                row = hourly.setdefault(cat, {})
                row[int(h)] = row.get(int(h), 0) + n
            out["by_category"] = dict(sorted(by_cat.items(), key=lambda kv: -kv[1]))
            starts = [h for h, _n, _b in out["series"]]
            out["blocks_by_category"] = {
                cat: [row.get(h, 0) for h in starts] for cat, row in hourly.items()
            }
            out["top_names"] = db.execute(
                "SELECT qname, zone, sum(n) FROM block_counts WHERE hour >= ?"
                " GROUP BY qname ORDER BY 3 DESC, qname LIMIT 10",
                (start,),
            ).fetchall()
            out["top_clients"] = db.execute(
                "SELECT client, sum(n) FROM block_clients WHERE hour >= ?"
                " GROUP BY client ORDER BY 2 DESC, client LIMIT 10",
                (start,),
            ).fetchall()
            out["top_queried"] = db.execute(
                "SELECT qname, count(*) FROM (SELECT qname, ts FROM query_log"
                " ORDER BY id DESC LIMIT ?) WHERE ts >= ? GROUP BY qname ORDER BY 2 DESC LIMIT 10",
                (TOP_QUERIED_SCAN, since),
            ).fetchall()
            zones = [z for z, c in self.category.items() if c in INFECTED]
            if zones:
                marks = ",".join("?" * len(zones))
                out["infected"] = db.execute(
                    "SELECT client, count(*), max(ts), group_concat(DISTINCT qname) FROM query_log"
                    f" INDEXED BY query_log_zone WHERE policy_zone != '' AND {BLOCKED}"
                    " AND policy_zone IN"
                    f" ({marks}) AND ts >= ? GROUP BY client"
                    " ORDER BY 3 DESC LIMIT 50",
                    (*zones, since),
                ).fetchall()
        finally:
            db.close()
        return out

    # ------------------------------------------------------------- query log
    def queries(
        self, f: QueryFilter, before_id: int | None = None, limit: int = PAGE
    ) -> list[tuple[Any, ...]]:
        db = self._store()
        if db is None:
            return []
        where, args = f.sql()
        if before_id is not None:
            where += " AND id < ?"
            args.append(before_id)
        try:
            return db.execute(
                f"SELECT {', '.join(QUERY_COLUMNS)} FROM query_log WHERE {where}"
                " ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        finally:
            db.close()

    def queries_after(
        self, f: QueryFilter, after_id: int, limit: int = 200
    ) -> list[tuple[Any, ...]]:
        """Rows logged after *after_id* (the live query log), oldest first."""
        db = self._store()
        if db is None:
            return []
        where, args = f.sql()
        try:
            return db.execute(
                f"SELECT {', '.join(QUERY_COLUMNS)} FROM query_log WHERE {where} AND id > ?"
                " ORDER BY id LIMIT ?",
                (*args, after_id, limit),
            ).fetchall()
        finally:
            db.close()

    def last_id(self) -> int:
        """The newest query-log row's id (0: none yet)."""
        db = self._store()
        if db is None:
            return 0
        try:
            (last,) = db.execute("SELECT coalesce(max(id), 0) FROM query_log").fetchone()
            return int(last)
        finally:
            db.close()

    def queries_csv(self, f: QueryFilter, limit: int = 100_000) -> Iterator[tuple[Any, ...]]:
        db = self._store()
        if db is None:
            return
        where, args = f.sql()
        try:
            yield from db.execute(
                f"SELECT {', '.join(QUERY_COLUMNS)} FROM query_log WHERE {where}"
                " ORDER BY id DESC LIMIT ?",
                (*args, limit),
            )
        finally:
            db.close()

    # ------------------------------------------------------------- others
    def policy_hits(self) -> dict[str, tuple[int, float]]:
        db = self._store()
        if db is None:
            return {}
        try:
            out: dict[str, tuple[int, float]] = {}
            for zone, hits, last in db.execute(
                "SELECT zone, sum(hits), max(last_hit) FROM policy_hits GROUP BY zone"
            ):
                out[zone] = (int(hits), float(last))
            return out
        finally:
            db.close()

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

    def alerts(self, limit: int = 200) -> list[tuple[Any, ...]]:
        from mamori.alerts.engine import history_path

        db = _ro(history_path(self.cfg))
        if db is None:
            return []
        try:
            return db.execute(
                "SELECT time, rule, severity, subject, message, delivered, failed FROM alerts"
                " ORDER BY time DESC LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            db.close()

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
