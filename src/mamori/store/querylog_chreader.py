"""The query log's reads on ClickHouse (``QueryLogReader``), the same answers as
``querylog_sqlite`` on the same rows, over every node that writes to the server.

Time ranges are also given as id ranges (an id is the row's time in microseconds or
a little more: ``querylog_clickhouse``), so they read only the key range they need.
The live view (``queries_after``, ``last_id``) returns only rows older than *settle*
seconds: a node's batch that arrives a little late (its flush interval, a retry) is
not skipped; the live view lags by that much.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mamori.store.base import QUERY_COLUMNS, HitCount, QueryFilter
from mamori.store.ch_conn import Conn, lit

BLOCKED = "outcome IN ('blocked', 'dropped')"
_COLS = ", ".join(QUERY_COLUMNS)
SETTLE = 2.0  # seconds (default): the live view's lag
WINDOWS = (3_600_000_000, 86_400_000_000)  # id spans (microseconds) a page tries first


def _id_at(t: float) -> int:
    return max(int(t * 1_000_000), 0)


def where(f: QueryFilter) -> str:
    """The SQL condition selecting the rows of *f* (values as literals)."""
    parts: list[str] = []
    if f.client:
        parts.append(f"client = {lit(f.client)}")
    if f.device:
        parts.append(f"device = {lit(f.device.lower())}")
    if f.node:
        parts.append(f"node = {lit(f.node)}")
    if f.name:
        parts.append(f"positionCaseInsensitive(qname, {lit(f.name.lower())}) > 0")
    if f.action == "blocked":
        parts.append(f"policy_zone != '' AND {BLOCKED}")
    elif f.action == "allowed":
        parts.append(f"NOT ({BLOCKED})")
    elif f.action:
        parts.append(f"policy_action = {lit(f.action)}")
    if f.zone:
        parts.append(f"policy_zone = {lit(f.zone.rstrip('.') + '.')}")
    if f.since is not None:
        parts.append(f"ts >= {lit(float(f.since))} AND id >= {_id_at(f.since)}")
    if f.until is not None:
        parts.append(f"ts < {lit(float(f.until))}")
    return " AND ".join(parts) or "1"


def _node(node: str, column: str = "node") -> str:
    return f" AND {column} = {lit(node)}" if node else ""


class ClickHouseQueryReader:
    """*conn*: the server (its database), used by one thread at a time, or a function
    opening a connection: one per call then (the web app's requests run in threads; a
    driver connection is not shared between them); *settle*: the live view's lag in
    seconds."""

    def __init__(self, conn: Conn | Callable[[], Conn], settle: float = SETTLE) -> None:
        self._conn = conn if not callable(conn) else None
        self._open = conn if callable(conn) else None
        self.db = (self._conn or self._new()).database
        self.settle = settle
        self._ok = False

    def _new(self) -> Conn:
        assert self._open is not None
        c: Conn = self._open()
        return c

    @contextmanager
    def _use(self) -> Iterator[Conn]:
        if self._conn is not None:
            yield self._conn
            return
        c = self._new()
        try:
            yield c
        finally:
            c.close()

    def _ready(self, conn: Conn) -> bool:
        """The tables exist (a fleet whose nodes have not written yet has none)."""
        if not self._ok:
            rows = conn.query(
                "SELECT count() FROM system.tables WHERE database ="
                f" {lit(self.db)} AND name IN ('query_log', 'alerts')"
            )
            self._ok = int(rows[0][0]) == 2
        return self._ok

    def _q(self, sql: str) -> list[tuple[Any, ...]]:
        with self._use() as conn:
            if not self._ready(conn):
                return []
            return [tuple(r) for r in conn.query(sql)]

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        with self._use() as conn:
            if self._ready(conn):
                yield from conn.stream(sql)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # ------------------------------------------------------------- overview
    def hourly(self, start: int, node: str = "") -> dict[int, tuple[int, int]]:
        rows = self._q(
            f"SELECT hour, sum(queries), sum(blocked) FROM {self.db}.query_counts"
            f" WHERE hour >= {max(int(start), 1)}{_node(node)} GROUP BY hour"
        )
        return {int(h): (int(n), int(b)) for h, n, b in rows}

    def blocks_by_zone(self, start: int, node: str = "") -> list[tuple[int, str, int]]:
        rows = self._q(
            f"SELECT hour, zone, sum(n) FROM {self.db}.block_counts"
            f" WHERE hour >= {max(int(start), 1)}{_node(node)} GROUP BY hour, zone"
        )
        return [(int(h), str(z), int(n)) for h, z, n in rows]

    def top_blocked_names(
        self, start: int, node: str = "", limit: int = 10
    ) -> list[tuple[str, str, int]]:
        rows = self._q(
            f"SELECT qname, any(zone), sum(n) AS c FROM {self.db}.block_counts"
            f" WHERE hour >= {max(int(start), 1)}{_node(node)} GROUP BY qname"
            f" ORDER BY c DESC, qname LIMIT {int(limit)}"
        )
        return [(str(q), str(z), int(n)) for q, z, n in rows]

    def top_blocked_clients(
        self, start: int, node: str = "", limit: int = 10
    ) -> list[tuple[str, int]]:
        rows = self._q(
            f"SELECT client, sum(n) AS c FROM {self.db}.block_clients"
            f" WHERE hour >= {max(int(start), 1)}{_node(node)} GROUP BY client"
            f" ORDER BY c DESC, client LIMIT {int(limit)}"
        )
        return [(str(c), int(n)) for c, n in rows]

    def top_queried(
        self, since: float, scan: int, node: str = "", limit: int = 10
    ) -> list[tuple[str, int]]:
        rows = self._q(
            f"SELECT qname, count() AS c FROM (SELECT qname, ts FROM {self.db}.query_log"
            f" WHERE id >= {_id_at(since)}{_node(node)} ORDER BY id DESC LIMIT {int(scan)})"
            f" WHERE ts >= {lit(float(since))} GROUP BY qname ORDER BY c DESC, qname"
            f" LIMIT {int(limit)}"
        )
        return [(str(q), int(n)) for q, n in rows]

    def infected(
        self, zones: Sequence[str], since: float, node: str = "", limit: int = 50
    ) -> list[tuple[str, int, float, str]]:
        if not zones:
            return []
        rows = self._q(
            "SELECT client, count(), max(ts), arrayStringConcat(groupUniqArray(qname), ',')"
            f" FROM {self.db}.query_log WHERE id >= {_id_at(since)} AND ts >= {lit(since)}"
            f" AND policy_zone IN {lit(tuple(zones))} AND {BLOCKED}{_node(node)}"
            f" GROUP BY client ORDER BY max(ts) DESC LIMIT {int(limit)}"
        )
        return [(str(c), int(n), float(t), str(q)) for c, n, t, q in rows]

    def nodes(self) -> list[str]:
        rows = self._q(
            f"SELECT DISTINCT node FROM {self.db}.query_counts WHERE hour > 0 ORDER BY node"
        )
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------- query log pages
    def queries(
        self, f: QueryFilter, before_id: int | None = None, limit: int = 50
    ) -> list[tuple[Any, ...]]:
        cond = where(f)
        top = _id_at(time.time())
        if before_id is not None:
            cond += f" AND id < {int(before_id)}"
            top = int(before_id)
        # the newest hour of ids first, then the day, then all: a page of the newest rows
        # reads one key range, not the table (ORDER BY ... LIMIT sorts what it reads)
        for window in (*WINDOWS, None):
            low = "" if window is None else f" AND id >= {max(top - window, 0)}"
            rows = self._q(
                f"SELECT {_COLS} FROM {self.db}.query_log WHERE {cond}{low}"
                f" ORDER BY id DESC LIMIT {int(limit)}"
            )
            if len(rows) >= limit or window is None or top - window <= 0:
                return rows
        return []

    def queries_after(
        self, f: QueryFilter, after_id: int, limit: int = 200
    ) -> list[tuple[Any, ...]]:
        settled = _id_at(time.time() - self.settle)
        return self._q(
            f"SELECT {_COLS} FROM {self.db}.query_log WHERE {where(f)} AND id > {int(after_id)}"
            f" AND id < {settled} ORDER BY id LIMIT {int(limit)}"
        )

    def last_id(self) -> int:
        settled = _id_at(time.time() - self.settle)
        rows = self._q(f"SELECT max(id) FROM {self.db}.query_log WHERE id < {settled}")
        return int(rows[0][0]) if rows else 0

    def queries_csv(self, f: QueryFilter, limit: int = 100_000) -> Iterator[tuple[Any, ...]]:
        yield from self._stream(
            f"SELECT {_COLS} FROM {self.db}.query_log WHERE {where(f)}"
            f" ORDER BY id DESC LIMIT {int(limit)}"
        )

    def policy_hits(self, node: str = "") -> list[HitCount]:
        cond = f" AND node = {lit(node)}" if node else " AND node NOT LIKE '\\0%'"
        rows = self._q(
            "SELECT zone, trigger, action, sumMerge(hits) AS h, minMerge(first_hit),"
            f" maxMerge(last_hit) FROM {self.db}.policy_hits WHERE 1{cond}"
            " GROUP BY zone, trigger, action ORDER BY zone, h DESC"
        )
        return [(str(z), str(t), str(a), int(h), float(f), float(la))
                for z, t, a, h, f, la in rows]  # fmt: skip

    def alerts(self, limit: int = 200, node: str = "") -> list[tuple[Any, ...]]:
        return self._q(
            "SELECT time, rule, severity, subject, message, delivered, failed, node"
            f" FROM {self.db}.alerts WHERE 1{_node(node)} ORDER BY time DESC LIMIT {int(limit)}"
        )

    # ------------------------------------------------------------- time range reads
    def _range(self, since: float, until: float) -> str:
        return f"id >= {_id_at(since)} AND ts >= {lit(float(since))} AND ts < {lit(float(until))}"

    def blocks_by_bucket(self, since: float, bucket: int) -> list[tuple[int, str, int]]:
        b = int(bucket)
        rows = self._q(
            f"SELECT intDiv(toUInt64(ts), {b}) * {b} AS t, qname, count()"
            f" FROM {self.db}.query_log WHERE id >= {_id_at(since)} AND ts >= {lit(since)}"
            f" AND policy_zone != '' AND {BLOCKED} GROUP BY t, qname"
        )
        return [(int(t), str(q), int(n)) for t, q, n in rows]

    def count(self, since: float, until: float) -> int:
        rows = self._q(f"SELECT count() FROM {self.db}.query_log WHERE {self._range(since, until)}")
        return int(rows[0][0]) if rows else 0

    def distinct_clients(self, since: float, until: float) -> int:
        rows = self._q(
            f"SELECT uniqExact(client) FROM {self.db}.query_log WHERE {self._range(since, until)}"
        )
        return int(rows[0][0]) if rows else 0

    def names(self, since: float, until: float) -> set[str]:
        rows = self._q(
            f"SELECT DISTINCT qname FROM {self.db}.query_log WHERE {self._range(since, until)}"
        )
        return {str(r[0]) for r in rows}

    def answers(self, since: float, until: float, cname_only: bool = False) -> set[str]:
        cond = (
            "position(answer, 'CNAME ') > 0"
            if cname_only
            else "(startsWith(answer, 'A ') OR startsWith(answer, 'AAAA ')"
            " OR position(answer, ';A ') > 0 OR position(answer, ';AAAA ') > 0"
            " OR position(answer, 'CNAME ') > 0)"
        )
        rows = self._q(
            f"SELECT DISTINCT answer FROM {self.db}.query_log"
            f" WHERE {self._range(since, until)} AND {cond}"
        )
        return {str(r[0]) for r in rows}

    def clients(self, since: float, until: float) -> list[str]:
        rows = self._q(
            f"SELECT DISTINCT client FROM {self.db}.query_log WHERE {self._range(since, until)}"
        )
        return [str(r[0]) for r in rows]

    def grouped(
        self,
        since: float,
        until: float,
        names: Iterable[str],
        answers: Iterable[str],
        clients: Iterable[str],
    ) -> Iterator[tuple[str, str, int, str, str, int]]:
        terms = []
        for column, given in (("qname", names), ("answer", answers), ("client", clients)):
            values = sorted(given)
            if values:
                terms.append(f"{column} IN {lit(tuple(values))}")
        if not terms:
            return
        for q, c, t, g, a, n in self._stream(
            "SELECT qname, client, qtype, client_group, answer, count()"
            f" FROM {self.db}.query_log WHERE {self._range(since, until)}"
            f" AND ({' OR '.join(terms)}) GROUP BY qname, client, qtype, client_group, answer"
        ):
            yield str(q), str(c), int(t), str(g), str(a), int(n)

    def name_clients(self, since: float) -> Iterator[tuple[str, str, float, float]]:
        for q, c, f, la in self._stream(
            f"SELECT qname, client, min(ts), max(ts) FROM {self.db}.query_log"
            f" WHERE id >= {_id_at(since)} AND ts >= {lit(float(since))} GROUP BY qname, client"
        ):
            yield str(q), str(c), float(f), float(la)
