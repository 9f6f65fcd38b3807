"""The query and hit logs on ClickHouse: the ``QueryLogStore`` the writer thread uses
(``[store] url``), on the schema of ``store.querylog_chschema``.

A batch (the rows, their per-hour aggregates, policy-hit counts and the writer's mark)
gets an id and row ids when it is made; it is sent exactly once: its query-log rows
carry the batch id (found again by id range, per day partition), every aggregate insert
carries a marker row in the same block. A ClickHouse that does not answer (down, slow:
the connection's timeout) costs the writer at most that timeout: the batch is kept in
the local spool (``pdns_spool.Spool``) and sent, in order, before the next one once the
server answers again.

On a cluster (*cluster*: ``[store] cluster``) every batch goes whole to one shard,
chosen by its id (crc32): its rows, aggregates and markers in that shard's local
``*_shard`` tables, so the marker check above stays exact (a batch sent again goes to
the same shard and finds its markers there); the writer's runs and this node's alerts
go to the shard of the node's name. Reads go through the ``Distributed`` tables.

Row ids: the row's time in microseconds, made strictly increasing per writer (a tie
is bumped by 1): below 2**53 until the year 2255, ordered by time across nodes (two
nodes' rows may tie on an id: the console's pages by id may then show such a row on
two pages or skip it at a page boundary).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mamori.errors import StoreError
from mamori.store import ch_runs
from mamori.store import querylog_chschema as schema
from mamori.store.base import BLOCKED_OUTCOMES, HitCount, QueryRowTuple, WriterMark, WriterRun
from mamori.store.ch_cluster import connect_shards, shard_of
from mamori.store.ch_conn import ChRefused, ChUnavailable, Conn, lit
from mamori.store.pdns_spool import Spool
from mamori.store.sqlite import label_cutoffs, max_cut

log = logging.getLogger(__name__)

RETRY_AFTER = 5.0  # seconds between attempts while ClickHouse is away
REFUSALS = 3  # a kept batch the server refuses this many times is set aside
DAY = 86400
# A batch's markers (its exactly-once proof) are deleted with the rows they guard: the
# aggregates' at their retention, the policy hits' (kept forever) this long after the
# batch was made. A batch sent again after its markers went would count again: only a
# batch left in a spool that long (a node down for a month with a batch in flight).
HITS_MARKER_DAYS = 30


def batch_id(now: float) -> str:
    """A new batch id: its creation time (10 hex digits of UNIX seconds) then 22 random
    hex digits, so markers sort by age (``prune_queries`` deletes the old ones)."""
    return f"{int(now):010x}{uuid.uuid4().hex[:22]}"


def marker_before(t: float) -> str:
    """SQL: a marker row's ``node`` is older than *t* (UNIX seconds); real node names
    never start with the marker byte, so they never match."""
    return f"node < {lit(schema.MARKER + f'{max(int(t), 0):010x}')}"


_COLS = [c for c, _t in schema.QUERY_LOG]


class QueryLogClickHouse:
    """*conn*: the server; *node*: this node's ``[server] node_name``; *spool*: where
    batches wait while the server is away (None: a failed write raises); *create*: create
    the missing tables now (else at the first write); *cluster*: a name of the server's
    ``remote_servers`` and *connect(host, port)* opening its shards."""

    def __init__(
        self,
        conn: Conn,
        node: str,
        spool: Spool | None = None,
        create: bool = True,
        cluster: str = "",
        connect: Callable[[str, int], Conn] | None = None,
    ) -> None:
        self.conn = conn
        self.cluster = cluster
        self._connect = connect
        self.shards: list[Conn] = []
        self.db = conn.database
        self.node = node
        self.spool = spool
        self._schema_ok = False
        self._retry_at = 0.0
        self._last_id = 0
        self._runs: dict[int, tuple[int, float, int]] = {}  # run -> (pid, started, lost)
        self._mine: set[int] = set()  # the runs this process started (begin_run)
        self.replayed = False  # begin_run found batches of a previous run in the spool
        self._refused: dict[str, int] = {}  # kept batch (file name) -> refusals so far
        try:
            if create:
                self.ensure_schema()
        except ChRefused as e:  # a config error: DNS goes on, the batches wait on disk
            log.error(
                "query log: %s: the query log is kept in %s until this is fixed"
                " (`mamori check` tells)", e, self._where(),
            )  # fmt: skip
        except ChUnavailable as e:
            log.warning("query log: %s (batches are kept in %s)", e, self._where())

    def _where(self) -> str:
        return str(self.spool.dir) if self.spool is not None else "memory"

    def ensure_schema(self) -> list[str]:
        """Create what is missing; the objects created. Raises StoreError (ChRefused: the
        database is a cluster's and ``[store] cluster`` is not set, or the reverse)."""
        if self._schema_ok:
            return []
        created = []
        sql = f"SELECT name, engine FROM system.tables WHERE database = {lit(self.db)}"
        for node in self.nodes():  # first every node's state: refuse before creating
            self._check_kind({str(r[0]): str(r[1]) for r in node.query(sql)}.get("query_log"))
        for node in self.nodes():
            node.query(f"CREATE DATABASE IF NOT EXISTS {self.db}")
            have = {str(r[0]) for r in node.query(sql)}
            for name, stmt in schema.objects(self.db, self.cluster):
                if name not in have:
                    node.query(stmt)
                    created.append(name)
        self._schema_ok = True
        return created

    def _check_kind(self, engine: str | None) -> None:
        """Refuse a database made for the other kind of setup (*engine*: its
        ``query_log``'s, None: none yet): a cluster's (``Distributed``) without
        ``[store] cluster``, or a single server's with it. Raises ChRefused."""
        if engine is None:
            return
        if not self.cluster and engine == "Distributed":
            raise ChRefused(
                f"ClickHouse database {self.db} holds a cluster's query log (Distributed"
                " tables) but store.cluster is not set: set [store] cluster to the"
                " cluster's name (its remote_servers entry)"
            )
        if self.cluster and engine != "Distributed":
            raise ChRefused(
                f"ClickHouse database {self.db} holds a single server's query log"
                f" ({engine} tables) but store.cluster = {self.cluster!r} is set: remove"
                " store.cluster or give the cluster a database of its own"
            )

    def nodes(self) -> list[Conn]:
        """Where the schema lives: the server, and on a cluster every shard too (the DDL
        runs on each: ``ON CLUSTER`` would need ZooKeeper). Raises StoreError."""
        if not self.cluster:
            return [self.conn]
        return [*self.servers(), self.conn]

    def servers(self) -> list[Conn]:
        """The servers holding the rows: the shards, or the one server."""
        if not self.cluster:
            return [self.conn]
        if not self.shards:
            self.shards = connect_shards(self.conn, self.cluster, self._connect)
        return self.shards

    def _shard(self, key: str) -> Conn:
        shards = self.servers()
        return shards[shard_of(key, len(shards))]

    def local(self, table: str) -> str:
        """The name of *table* on the servers holding the rows (a cluster's ``_shard``)."""
        return table + schema.SHARD if self.cluster else table

    def tables(self) -> set[str]:
        rows = self.conn.query(f"SELECT name FROM system.tables WHERE database = {lit(self.db)}")
        return {str(r[0]) for r in rows}

    # ------------------------------------------------------------------ writing
    def _ids(self, rows: Sequence[QueryRowTuple]) -> list[int]:
        out = []
        last = self._last_id
        for r in rows:
            last = max(int(r[0] * 1_000_000), last + 1)
            out.append(last)
        self._last_id = last
        return out

    def write_queries(
        self,
        rows: Sequence[QueryRowTuple],
        mark: WriterMark | None = None,
        hits: Sequence[HitCount] = (),
    ) -> None:
        """Append *rows* with their aggregates, *hits* and *mark*, exactly once. With a
        spool, never raises for a server that is away (the batch waits on disk)."""
        batch = {
            "id": batch_id(time.time()),
            "node": self.node,
            "rows": [[i, *r] for i, r in zip(self._ids(rows), rows, strict=True)],
            "hits": [list(h) for h in hits],
            "mark": None if mark is None else [mark.run, mark.received, mark.committed,
                                               mark.failed],
        }  # fmt: skip
        if self.spool is None:
            self._send(batch)
            return
        if len(self.spool) or time.monotonic() < self._retry_at:
            self._keep(batch)
            self.drain()
            return
        try:
            self._send(batch)
        except ChUnavailable as e:
            self._away(e)
            self._keep(batch)
        except StoreError as e:
            # refused midway (too many parts, a table being altered ...): some of its
            # INSERTs may be in; kept, the rest goes later (the markers skip what is in),
            # or set aside by ``drain`` if the server refuses it again
            log.error("query log: ClickHouse refuses a batch now (%s): kept in %s", e,
                      self._where())  # fmt: skip
            self._retry_at = time.monotonic() + RETRY_AFTER
            self._keep(batch)

    def _keep(self, batch: dict[str, Any]) -> None:
        """Keep *batch* in the spool. Raises StoreError when it is full (the writer counts
        the batch's events as failed)."""
        assert self.spool is not None
        if not self.spool.append(batch, len(batch["rows"])):
            raise StoreError(f"query log: spool {self.spool.dir} is full: batch dropped")

    def _away(self, e: Exception) -> None:
        if time.monotonic() >= self._retry_at:
            log.warning("query log: %s; batches are kept in %s until it answers", e, self._where())
        self._retry_at = time.monotonic() + RETRY_AFTER

    def drain(self, force: bool = False) -> int:
        """Send the kept batches, oldest first, until one fails; the number still kept."""
        if self.spool is None:
            return 0
        if not force and time.monotonic() < self._retry_at:
            return len(self.spool)
        with self.spool.sending() as mine:
            if mine:
                for path in self.spool.files():
                    try:
                        batch = self.spool.read(path)
                    except (OSError, ValueError) as e:
                        log.error("query log: kept batch %s is damaged (%s): set aside", path, e)
                        self.spool.set_aside(path)
                        continue
                    try:
                        self._send(batch)
                    except ChUnavailable as e:
                        self._away(e)
                        break
                    except StoreError as e:  # refused: tried again, then set aside
                        tries = self._refused.get(path.name, 0) + 1
                        if tries < REFUSALS:  # may be passing (too many parts ...)
                            self._refused[path.name] = tries
                            log.error("query log: ClickHouse refuses batch %s (%s): kept,"
                                      " tried again in %g s", path, e, RETRY_AFTER)  # fmt: skip
                            self._retry_at = time.monotonic() + RETRY_AFTER
                            break
                        log.error("query log: ClickHouse refuses batch %s (%s): set aside", path, e)
                        self._refused.pop(path.name, None)
                        self.spool.set_aside(path)
                        continue
                    self._refused.pop(path.name, None)
                    self.spool.remove(path)
        return len(self.spool)

    def _send(self, batch: dict[str, Any]) -> None:
        """Insert one batch exactly once. Raises ChUnavailable, StoreError."""
        self.ensure_schema()
        bid, node, rows = batch["id"], batch["node"], batch["rows"]
        conn = self._shard(bid)
        marker = schema.MARKER + bid
        days: dict[int, list[list[Any]]] = {}
        for r in rows:  # one INSERT per day partition: one part each, all or nothing
            days.setdefault(int(r[1]) // DAY, []).append(r)
        hours: dict[int, list[int]] = {}
        names: dict[tuple[int, str, str], int] = {}
        clients: dict[tuple[int, str, str, str], int] = {}
        for r in rows:
            hour = int(r[1] // 3600) * 3600
            h = hours.setdefault(hour, [0, 0])
            h[0] += 1
            if r[15] in BLOCKED_OUTCOMES:
                h[1] += 1
                if r[11]:  # policy_zone
                    names[(hour, r[11], r[3])] = names.get((hour, r[11], r[3]), 0) + 1
                    k = (hour, r[11], r[2], r[17])
                    clients[k] = clients.get(k, 0) + 1
        todo: dict[str, list[tuple[Any, ...]]] = {
            "query_counts": [(h, node, q, b) for h, (q, b) in hours.items()],
            "block_counts": [(h, node, z, q, n) for (h, z, q), n in names.items()],
            "block_clients": [(h, node, z, c, g, n) for (h, z, c, g), n in clients.items()],
            "policy_hits_in": [(z, t, a, node, n, f, la) for z, t, a, n, f, la in batch["hits"]],
        }
        # a marker's sum is 1, never 0: SummingMergeTree drops all-zero rows when it
        # merges, and a marker gone would let a batch sent again be counted twice
        # (reads and retention skip hour 0)
        markers = {
            "query_counts": (0, marker, 1, 0),
            "block_counts": (0, marker, "", "", 1),
            "block_clients": (0, marker, "", "", "", 1),
            "policy_hits_in": ("", "", "", marker, 0, 0.0, 0.0),
        }
        checks = [
            f"SELECT {lit(f'q{d}')}, count() FROM {self.db}.{self.local('query_log')}"
            f" WHERE id >= {part[0][0]}"
            f" AND id <= {part[-1][0]} AND batch = {lit(bid)}"
            for d, part in days.items()
        ]
        checks += [
            f"SELECT {lit(t)}, count() FROM {self.db}.{self.local(t.removesuffix('_in'))}"
            f" WHERE node = {lit(marker)}"
            for t, v in todo.items()
            if v
        ]
        done = set()
        if checks:
            done = {str(t) for t, n in conn.query(" UNION ALL ".join(checks)) if int(n)}
        for d, part in days.items():
            if f"q{d}" not in done:
                data = [[r[0], r[1], node, *r[2:], bid] for r in part]
                conn.insert(self.local("query_log"), _COLS, [_row(r) for r in data])
        for table, values in todo.items():
            if values and table not in done:
                cols = [c for c, _t in (schema.HITS_IN if table == "policy_hits_in"
                                        else schema.SUMMING[table][0])]  # fmt: skip
                conn.insert(self.local(table), cols, [*values, markers[table]])
        if batch.get("mark"):
            self._mark(WriterMark(*batch["mark"]))

    def put_alert(self, alert: Sequence[Any]) -> None:
        """One alert (time, rule, severity, subject, message, delivered, failed) of this
        node. Raises StoreError (ChUnavailable: the server did not answer)."""
        self.ensure_schema()
        t, rule, severity, subject, message, delivered, failed = alert
        self._shard(self.node).insert(
            self.local("alerts"),
            ["time", "node", "rule", "severity", "subject", "message", "delivered", "failed"],
            [(float(t), self.node, rule, severity, subject, message, delivered, failed)],
        )

    # ------------------------------------------------------------------ runs
    def _put_run(self, r: WriterRun, lost_before: int) -> None:
        ch_runs.put_run(self._shard(self.node), self.local("writer_runs"), "node", self.node, r,
                        lost_before)  # fmt: skip

    def _mark(self, m: WriterMark, clean: bool = False) -> None:
        if m.run not in self._mine:
            # a kept batch of a previous run (this node crashed): that run keeps its pid
            # and start, and is never marked clean (its crash is reported at start)
            clean = False
            self.replayed = True
            if m.run not in self._runs:
                self._runs[m.run] = self._run_row(m.run)
        pid, started, lost_before = self._runs[m.run]
        run = WriterRun(m.run, pid, started, time.time(), m.received, m.committed, m.failed, clean)
        self._put_run(run, lost_before)

    def _run_row(self, run: int) -> tuple[int, float, int]:
        """Run *run*'s (pid, started, lost_before) as stored; zeros if it has no row."""
        found = ch_runs.read_run(self.conn, f"{self.db}.writer_runs", "node", self.node, run)
        if found is None:
            return (0, 0.0, 0)
        r, lost_before = found
        return (r.pid, r.started, lost_before)

    def last_run(self) -> WriterRun | None:
        """This node's latest writer run."""
        found = ch_runs.read_run(self.conn, f"{self.db}.writer_runs", "node", self.node)
        if found is None:
            return None
        r, lost_before = found
        self._runs.setdefault(r.run, (r.pid, r.started, lost_before))
        return r

    def begin_run(
        self, pid: int, noted: tuple[int, int] | None = None
    ) -> tuple[int, WriterRun | None]:
        """Record a writer run's start; (its id, the previous run or None). The batches a
        crashed run left in the spool were committed (to local disk, atomically): they
        are sent first, so their marks count them as committed; those still kept (the
        server went away meanwhile) count as committed too. Raises StoreError (the
        writer then runs without crash accounting)."""
        self.ensure_schema()
        # batches kept in this node's spool at start: the previous run was this machine's
        # (a crash), not another node using the same node_name
        self.replayed = self.replayed or (self.spool is not None and len(self.spool) > 0)
        if self.spool is not None and len(self.spool):
            self.last_run()  # the previous run's pid and start, for the kept batches' marks
            self.drain(force=True)
        last = self.last_run()
        if last is not None and self.spool is not None:
            kept = self._kept_mark(last.run)
            if kept is not None and kept.committed > last.committed:
                last = WriterRun(last.run, last.pid, last.started, last.updated,
                                 max(last.received, kept.received), kept.committed,
                                 max(last.failed, kept.failed), last.clean)  # fmt: skip
        seen = ch_runs.with_noted(last, noted) if last is not None else None
        if seen is not None:  # events noted after its last commit
            last = seen
            self._put_run(last, self._runs[last.run][2])
        run = (last.run if last else 0) + 1
        now = time.time()
        lost = last.lost if last else 0
        self._runs[run] = (pid, now, lost)
        self._mine.add(run)
        self._put_run(WriterRun(run, pid, now, now, 0, 0, 0, False), lost)
        return run, last

    def _kept_mark(self, run: int) -> WriterMark | None:
        """The latest mark of run *run* among the batches still in the spool."""
        assert self.spool is not None
        out = None
        for path in self.spool.files():
            try:
                m = self.spool.read(path).get("mark")
            except (OSError, ValueError):
                continue
            if m and int(m[0]) == run and (out is None or int(m[2]) > out.committed):
                out = WriterMark(*(int(x) for x in m))
        return out

    def end_run(self, mark: WriterMark) -> None:
        if self.spool is not None and self.drain(force=True):
            raise ChUnavailable("batches still kept on disk: the run is not marked clean")
        self._mark(mark, clean=True)

    # ------------------------------------------------------------------ hits, retention
    def add_policy_hits(self, counts: Sequence[HitCount]) -> None:
        self.write_queries([], None, counts)

    def policy_hits(self) -> list[HitCount]:
        from mamori.store.querylog_chreader import ClickHouseQueryReader

        return ClickHouseQueryReader(self.conn).policy_hits()

    def prune_queries(self, before: float, groups: Mapping[str, float | None] | None = None) -> int:
        """Delete rows older than *before* (per-group cutoffs as ``SQLiteStore``'s): whole
        UTC days by dropping their partitions, the rest by ``ALTER TABLE ... DELETE``
        (carried out in the background); the rows counted before. Raises StoreError."""
        db = self.db
        cut = max_cut(before, groups or {})
        labels = [str(r[0]) for r in self.conn.query(
            f"SELECT DISTINCT client_group FROM {db}.query_log WHERE ts < {lit(cut)}"
        )]  # fmt: skip
        cutoffs = label_cutoffs(labels, before, groups or {})
        n = 0
        conds = []
        for label, cutoff in cutoffs.items():
            if cutoff is not None:
                conds.append((f"ts < {lit(cutoff)} AND client_group = {lit(label)}", label, cutoff))
        if conds:
            where = " OR ".join(f"({c})" for c, _l, _c in conds)
            n = int(self.conn.query(f"SELECT count() FROM {db}.query_log WHERE {where}")[0][0])
        whole = min([before, *(c for _w, _l, c in conds)]) if conds else before
        log_table = self.local("query_log")
        for conn in self.servers():  # on a cluster: each shard's local tables
            if conds and all(c is not None for c in cutoffs.values()):
                # days wholly older than every cutoff go as partitions (cheap); the rest by rows
                for (p,) in conn.query(
                    f"SELECT DISTINCT partition FROM system.parts WHERE database = {lit(db)}"
                    f" AND table = {lit(log_table)} AND active"
                    f" AND (toUInt32(partition) + 1) * {DAY} <= {int(whole)}"
                ):
                    conn.query(f"ALTER TABLE {db}.{log_table} DROP PARTITION {int(p)}")
            if n:
                self._delete(conn, log_table, where)
            # the aggregates: a mutation only where rows are to go (each rewrites parts)
            deletes = [("block_clients", f"hour + 3600 <= {lit(c)} AND client_group = {lit(lb)}")
                       for _w, lb, c in conds]  # fmt: skip
            deletes += [
                (t, f"hour + 3600 <= {lit(before)}") for t in ("query_counts", "block_counts")
            ]
            for table, old in deletes:
                self._delete(conn, self.local(table), old + " AND hour > 0")  # never a marker
            # the markers of batches older than what their rows' retention keeps: a batch
            # that old sent again would only add rows that the next prune deletes
            marks = [("query_counts", before), ("block_counts", before)]
            kept = list((groups or {}).values())  # per-group retention: the longest rules
            if all(c is not None for c in kept):
                marks.append(("block_clients", min([before, *(c for c in kept if c is not None)])))
            for table, t in marks:
                self._delete(conn, self.local(table), f"hour = 0 AND {marker_before(t)}")
            self._delete(
                conn, self.local("policy_hits"),
                f"zone = '' AND {marker_before(time.time() - HITS_MARKER_DAYS * DAY)}",
            )  # fmt: skip
        return n

    def _delete(self, conn: Conn, table: str, cond: str) -> bool:
        """``ALTER TABLE ... DELETE`` on *conn* where rows match *cond* (a mutation
        rewrites parts: only when there is something to delete); whether one was made."""
        if not int(conn.query(f"SELECT count() FROM {self.db}.{table} WHERE {cond}")[0][0]):
            return False
        conn.query(f"ALTER TABLE {self.db}.{table} DELETE WHERE {cond}")
        return True

    def wait_mutations(self, timeout: float = 60.0) -> bool:
        """Wait until the server (every shard) has carried out its deletes (``ALTER TABLE
        ... DELETE`` mutations); False on *timeout* seconds."""
        end = time.monotonic() + timeout
        for conn in self.servers():
            while True:
                rows = conn.query(
                    f"SELECT count() FROM system.mutations WHERE database = {lit(self.db)}"
                    " AND is_done = 0"
                )
                if not int(rows[0][0]):
                    break
                if time.monotonic() >= end:
                    return False
                time.sleep(0.05)
        return True

    def close(self) -> None:
        if self.spool is not None and len(self.spool):
            self.drain(force=True)
        for conn in [*self.shards, self.conn]:
            conn.close()


def _row(r: list[Any]) -> tuple[Any, ...]:
    """A query-log row with the driver's types (cache_hit as 0/1)."""
    out = list(r)
    out[10] = int(bool(out[10]))  # id, ts, node, client, ..., cache_hit
    return tuple(out)
