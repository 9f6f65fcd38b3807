"""Passive DNS store on ClickHouse (scale-out): the ``PdnsStore`` and ``PdnsPortable``
contract of ``store.pdns_base``, on the schema of ``store.pdns_chschema``.

Writes never hold up their caller for longer than the connection timeout: a batch
ClickHouse does not take (down, slow) is kept on local disk (``pdns_spool``) and sent,
in order, before the next one once the server answers again. Every batch has an id,
written with its rows (a marker row in the same block): a batch is never counted twice,
even when an INSERT succeeded and its reply was lost.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mamori.errors import StoreError
from mamori.store import ch_runs
from mamori.store import pdns_chschema as schema
from mamori.store.base import WriterMark, WriterRun
from mamori.store.ch_conn import ChUnavailable, Conn, lit
from mamori.store.pdns_base import (
    NO_FENCES,
    Fences,
    FileProgress,
    NxRecord,
    NxTuples,
    Record,
    Tuples,
)
from mamori.store.pdns_keys import (
    NAME_RDATA,
    ip_key,
    prefix_range,
    rdata_name,
    reverse_name,
    unicode_if_idn,
)
from mamori.store.pdns_spool import Spool

log = logging.getLogger(__name__)

MARK = schema.MARKER
LOW = lit("\x01")  # keys below this are batch markers
ADDRESS = b"\x01"  # pdns_rdata.pkey of an A/AAAA address: 0x01 + 16 bytes
RDATA_NAME = "\x02"  # ... of a name in the rdata: 0x02 + the name reversed
RETRY_AFTER = 5.0  # seconds between attempts while ClickHouse is away
MUTATION_WAIT = 600.0  # seconds compact() waits for ClickHouse's deletes
# rname -> rrname in SQL (the labels back in order), for the result order
RRNAME = (
    "concat(arrayStringConcat(arrayReverse(splitByChar('.',"
    " substring(rname, 1, length(rname) - 1))), '.'), '.')"
)
_AGG = "minMerge(time_first) AS tf, maxMerge(time_last) AS tl, sumMerge(count) AS c"
_ORDER = f"tl DESC, {RRNAME}, rrtype, rdata, bailiwick"


class PdnsClickHouse:
    """*conn*: the server (``ch_conn``); *spool*: where batches wait while it is away
    (None: a failed write raises ``ChUnavailable``); *readonly*: no schema creation."""

    def __init__(
        self,
        conn: Conn,
        spool: Spool | None = None,
        readonly: bool = False,
        cluster: str = "",
        connect: Callable[[str, int], Conn] | None = None,
        sensor: str = "",
    ) -> None:
        """*cluster*: a name of the server's ``remote_servers``: local ``*_shard`` tables on
        every shard, ``Distributed`` tables over them; *connect(host, port)* opens a shard
        (each shard's rows are written to it directly, exactly once per shard); *sensor*:
        whose tap runs ``begin_run``/``end_run`` record and read (a fleet's nodes share
        the store, each its own runs)."""
        self.conn = conn
        self.sensor = sensor
        self.cluster = cluster
        self._connect = connect
        self.shards: list[Conn] = []
        self.dbname = conn.database
        self.spool = spool
        self.readonly = readonly
        self.path = spool.dir if spool is not None else Path(".")
        self._schema_ok = False
        self._retry_at = 0.0
        self._runs: dict[int, tuple[int, float, int]] = {}  # run -> (pid, started, lost_before)
        self._spooled_progress: dict[str, tuple[int, bool]] = {}
        self._aside: tuple[ThreadPoolExecutor, Conn] | None = None
        # batches of the running import_records (id -> records) and the ones the server
        # refused or the full spool dropped (id -> why)
        self._watched: dict[str, int] = {}
        self._refused: dict[str, str] = {}
        if spool is not None:
            for f in spool.files():
                try:
                    self._note_progress(spool.read(f))
                except (OSError, ValueError):
                    continue
        if not readonly:
            try:
                self.ensure_schema()
            except ChUnavailable as e:  # created when it is back
                log.warning("passive DNS: %s (batches are kept in %s)", e, self.path)

    # ------------------------------------------------------------------ schema
    def ensure_schema(self) -> list[str]:
        """Create what is missing; the objects created. Raises StoreError."""
        if self._schema_ok:
            return []
        if self.cluster:
            return self._cluster_schema()
        self.conn.query(f"CREATE DATABASE IF NOT EXISTS {self.dbname}")
        have = self.tables()
        created = []
        for name, stmt in schema.ddl(self.dbname, self.conn.version()):
            if name not in have:
                self.conn.query(stmt)
                created.append(name)
        self._add_runs_sensor(self.conn, ["pdns_tap_runs"])
        self._schema_ok = True
        return created

    def _cluster_schema(self) -> list[str]:
        """On every node (the shards and this one): the local tables and the Distributed
        ones. Run by mamori on each node, so no ZooKeeper is needed (``ON CLUSTER`` DDL
        needs it)."""
        rows = self.conn.query(
            "SELECT shard_num, host_address, port FROM system.clusters"
            f" WHERE cluster = {lit(self.cluster)} ORDER BY shard_num, replica_num"
        )
        first: dict[int, tuple[str, int]] = {}
        for num, host, port in rows:
            first.setdefault(int(num), (str(host), int(port)))
        if not first:
            raise StoreError(f"ClickHouse: no cluster {self.cluster!r} in remote_servers")
        if self._connect is None:
            raise StoreError("ClickHouse cluster: no way to connect to the shards")
        if not self.shards:
            self.shards = [self._connect(h, p) for _n, (h, p) in sorted(first.items())]
        created = []
        for node in [*self.shards, self.conn]:
            node.query(f"CREATE DATABASE IF NOT EXISTS {self.dbname}")
            rows = node.query(f"SELECT name FROM system.tables WHERE database = {lit(self.dbname)}")
            have = {str(r[0]) for r in rows}
            version = node.version()
            for name, stmt in [*schema.ddl(self.dbname, version, "_shard"),
                               *schema.distributed(self.dbname, self.cluster)]:  # fmt: skip
                if name not in have:
                    node.query(stmt)
                    created.append(name)
            self._add_runs_sensor(node, ["pdns_tap_runs_shard", "pdns_tap_runs"])
        self._schema_ok = True
        return created

    def _add_runs_sensor(self, node: Conn, tables: list[str]) -> None:
        """A store created before tap runs were per sensor: the ``sensor`` column added to
        *tables* of *node* (``ALTER TABLE ... ADD COLUMN``, 18.16 on; the local table
        before the ``Distributed`` one over it). Another node adding it at the same
        time: its column is as good as ours. Raises StoreError."""
        for table in tables:
            if self._has_column(node, table, "sensor"):
                continue
            try:
                node.query(schema.RUNS_SENSOR.format(table=f"{self.dbname}.{table}"))
            except StoreError:
                if not self._has_column(node, table, "sensor"):
                    raise

    def _has_column(self, node: Conn, table: str, column: str) -> bool:
        rows = node.query(
            f"SELECT count() FROM system.columns WHERE database = {lit(self.dbname)}"
            f" AND table = {lit(table)} AND name = {lit(column)}"
        )
        return bool(int(rows[0][0]))

    def _local(self, table: str) -> str:
        return table + "_shard" if self.cluster else table

    def _split(self, key: Sequence[str | bytes | None]) -> list[list[int]]:
        """Row numbers per shard (crc32 of the key: stable across processes); a row
        whose key is None goes nowhere."""
        n = len(self.shards)
        parts: list[list[int]] = [[] for _ in range(n)]
        for i, k in enumerate(key):
            if k is not None:
                parts[zlib.crc32(k if isinstance(k, bytes) else k.encode()) % n].append(i)
        return parts

    def _insert_once(self, conn: Conn, table: str, columns: list[list[Any]], bid: str,
                     marker: tuple[Any, ...]) -> None:  # fmt: skip
        """Insert *columns* and the batch marker into *table* on *conn* unless its marker
        is there already (one block: one part, all or nothing)."""
        key = _MARKER_KEY[table]
        local = self._local(table)
        rows = conn.query(f"SELECT count() FROM {self.dbname}.{local} WHERE {key} = {lit(bid)}")
        if int(rows[0][0]):
            return
        for col, v in zip(columns, marker, strict=True):
            col.append(v)
        conn.insert_columns(self._local(_input(table)), _input_columns(table), columns)

    def tables(self) -> set[str]:
        rows = self.conn.query(
            f"SELECT name FROM system.tables WHERE database = {lit(self.dbname)}"
        )
        return {str(r[0]) for r in rows}

    def _beside(self) -> tuple[ThreadPoolExecutor, Conn] | None:
        """A second connection and a thread to insert into the pivot table while this
        one inserts into the others (the server runs each INSERT's views on one core);
        None when the connection cannot be cloned (in-process engines)."""
        if self._aside is None:
            clone = getattr(self.conn, "clone", None)
            if clone is None:
                return None
            self._aside = (ThreadPoolExecutor(1, "pdns-ch-insert"), clone())
        return self._aside

    def close(self) -> None:
        if self.spool is not None and len(self.spool) and not self.readonly:
            self.drain(force=True)
        if self._aside is not None:
            pool, aside = self._aside
            pool.shutdown()
            aside.close()
            self._aside = None
        for conn in [*self.shards, self.conn]:
            conn.close()

    # ------------------------------------------------------------------ writing
    def write(
        self,
        tuples: Tuples,
        nx: NxTuples | None = None,
        sensors: dict[str, tuple[int, int]] | None = None,
        progress: FileProgress | None = None,
        mark: WriterMark | None = None,
    ) -> None:
        """Merge a batch (see ``PdnsStore.write``). With a spool, a batch ClickHouse does
        not take is kept on disk and sent later, in order (never raises for that). Raises
        StoreError (not ``ChUnavailable``) when the server refuses the batch: it is not
        kept (sending it again would fail the same way)."""
        self._put(self._batch(tuples, nx, sensors, progress, mark))

    def _batch(
        self,
        tuples: Tuples,
        nx: NxTuples | None = None,
        sensors: dict[str, tuple[int, int]] | None = None,
        progress: FileProgress | None = None,
        mark: WriterMark | None = None,
    ) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "created": int(time.time()),
            "tuples": tuples,  # a dict until it is kept on disk (then lists: _keep)
            "nx": [[*k, *v] for k, v in (nx or {}).items()],
            "sensors": [[s, n, last] for s, (n, last) in (sensors or {}).items()],
            "progress": None if progress is None else [
                progress.file, progress.path, progress.size, progress.messages,
                progress.complete,
            ],
            "mark": None if mark is None else [mark.run, mark.received, mark.committed,
                                               mark.failed],
        }  # fmt: skip

    def _put(self, batch: dict[str, Any]) -> None:
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

    def _keep(self, batch: dict[str, Any]) -> None:
        assert self.spool is not None
        if isinstance(batch["tuples"], dict):
            batch = {**batch, "tuples": [[*k, *v] for k, v in batch["tuples"].items()]}
        if self.spool.append(batch, len(batch["tuples"])):
            self._note_progress(batch)
        elif batch["id"] in self._watched:
            self._refused[batch["id"]] = f"the spool {self.spool.dir} is full: dropped"

    def _note_progress(self, batch: dict[str, Any]) -> None:
        p = batch.get("progress")
        if p:
            done, whole = self._spooled_progress.get(p[0], (0, False))
            self._spooled_progress[p[0]] = (max(done, int(p[3])), whole or bool(p[4]))

    def _away(self, e: Exception) -> None:
        if time.monotonic() >= self._retry_at:
            log.warning("passive DNS: %s; batches are kept in %s until it answers", e, self.path)
        self._retry_at = time.monotonic() + RETRY_AFTER

    def drain(self, force: bool = False) -> int:
        """Send the kept batches, oldest first, until one fails; the number still kept.
        *force*: try now even within the back-off after a failure."""
        if self.spool is None:
            return 0
        if not force and time.monotonic() < self._retry_at:
            return len(self.spool)
        with self.spool.sending() as mine:
            if mine:
                self._drain()
        left = len(self.spool)
        if not left:
            self._spooled_progress.clear()
        return left

    def _drain(self) -> None:
        assert self.spool is not None
        for path in self.spool.files():
            try:
                batch = self.spool.read(path)
            except (OSError, ValueError) as e:
                log.error("passive DNS: kept batch %s is damaged (%s): set aside", path, e)
                self.spool.set_aside(path)
                continue
            bid = str(batch.get("id", ""))
            try:
                self._send(batch)
            except ChUnavailable as e:
                self._away(e)
                break
            except Exception as e:  # refused by the server: never blocks the others
                log.error(
                    "passive DNS: ClickHouse refuses kept batch %s (%s): moved to %s"
                    " (%d batches set aside since start); the batches behind it go on",
                    path, e, self.spool.dir / "rejected", self.spool.rejected + 1,
                )  # fmt: skip
                self.spool.set_aside(path)
                if bid in self._watched:
                    self._refused[bid] = f"ClickHouse refused it: {e}"
                continue
            self.spool.remove(path)

    def _send(self, batch: dict[str, Any]) -> None:
        """Insert one batch exactly once (marker rows). Raises ChUnavailable, StoreError."""
        self.ensure_schema()
        bid = MARK + batch["id"]
        created = int(batch["created"])
        cols, names, unames = _tuple_columns(batch["tuples"])
        nx = [(name, rtype, f, la, c) for name, rtype, f, la, c in batch["nx"]]
        sensors = [(s, n, last) for s, n, last in batch["sensors"]]
        marker: tuple[Any, ...] = (bid, 0, "", "", created, created, 0)
        todo: dict[str, tuple[Sequence[Sequence[Any]], tuple[Any, ...]]] = {
            "pdns_rrset": (cols, marker),  # the same tuples: the views derive the keys
            "pdns_rdata": (cols, marker),
            "pdns_nxdomain": (_columns(nx, 5), (bid, 0, created, created, 0)),
            "pdns_sensors": (_columns(sensors, 3), (bid, 0, created)),
        }
        todo = {t: v for t, v in todo.items() if v[0][0]}
        if todo and self.cluster:
            for table, (columns, marker) in todo.items():
                key = _shard_key(table, columns)
                for conn, idx in zip(self.shards, self._split(key), strict=True):
                    if idx:
                        part = [[c[i] for i in idx] for c in columns]
                        self._insert_once(conn, table, part, bid, marker)
            todo = {}
        if todo:
            union = " UNION ALL ".join(
                f"SELECT {lit(t)}, count() FROM {self.dbname}.{t}"
                f" WHERE {_MARKER_KEY[t]} = {lit(bid)}"
                for t in todo
            )
            done = {str(t) for t, n in self.conn.query(union) if int(n)}
            pending = [t for t in todo if t not in done]
            aside = self._beside() if "pdns_rdata" in pending and len(pending) > 1 else None
            future = None
            if aside is not None:  # the pivot table's view costs most: in parallel
                pending.remove("pdns_rdata")
                future = aside[0].submit(_insert, aside[1], "pdns_rdata", *todo["pdns_rdata"])
            try:
                for table in pending:
                    _insert(self.conn, table, *todo[table])
            finally:
                if future is not None:  # waited for whatever happened on this side
                    future.result()
        if names and self.cluster:
            for conn, idx in zip(self.shards, self._split(names), strict=True):
                if idx:
                    part = [[names[i] for i in idx], [unames[i] for i in idx]]
                    conn.insert_columns("pdns_names_shard", ["rrname", "uname"], part)
        elif names:
            self.conn.insert_columns("pdns_names", ["rrname", "uname"], [names, unames])
        mark = batch.get("mark")
        if mark:
            self._mark(WriterMark(*mark))
        p = batch.get("progress")
        if p:
            self._home().insert(
                self._local("pdns_ingest"),
                ["file", "path", "size", "messages", "complete", "updated"],
                [(p[0], p[1], int(p[2]), int(p[3]), int(bool(p[4])), created)],
            )

    # --------------------------------------------------------- runs, progress
    def _runs_row(self, run: int | None = None) -> WriterRun | None:
        """This sensor's run *run* (None: its latest), read by its latest version."""
        found = ch_runs.read_run(
            self.conn, f"{self.dbname}.pdns_tap_runs", "sensor", self.sensor, run
        )
        if found is None:
            return None
        r, lost_before = found
        self._runs.setdefault(r.run, (r.pid, r.started, lost_before))
        return r

    def _home(self) -> Conn:
        """Where the small tables (capture progress, tap runs) are written: the first shard."""
        return self.shards[0] if self.cluster else self.conn

    def _put_run(self, r: WriterRun, lost_before: int) -> None:
        ch_runs.put_run(self._home(), self._local("pdns_tap_runs"), "sensor", self.sensor, r,
                        lost_before)  # fmt: skip

    def _mark(self, m: WriterMark, clean: bool = False) -> None:
        if m.run not in self._runs:  # a kept batch of a previous run: keep its pid, start
            self._runs_row(m.run)
        pid, started, lost_before = self._runs.get(m.run, (0, 0.0, 0))
        now = time.time()
        run = WriterRun(m.run, pid, started, now, m.received, m.committed, m.failed, clean)
        self._put_run(run, lost_before)

    def begin_run(
        self, pid: int, noted: tuple[int, int] | None = None
    ) -> tuple[int, WriterRun | None]:
        """Record a tap run of this store's sensor; (its id, the sensor's previous run or
        None). Run ids are ``run_base(sensor)`` + 1, 2, ...: unique across sensors.
        Raises StoreError."""
        self.ensure_schema()
        last = self._runs_row()
        seen = ch_runs.with_noted(last, noted) if last is not None else None
        if seen is not None:  # events noted after its last commit
            last = seen
            self._put_run(last, self._runs[last.run][2])
        # a run of before the ids were per sensor (a mark replayed from the spool) is
        # below the base: the next id is in this sensor's range all the same
        run = max(last.run if last else 0, run_base(self.sensor)) + 1
        now = time.time()
        lost = last.lost if last else 0
        self._runs[run] = (pid, now, lost)
        self._put_run(WriterRun(run, pid, now, now, 0, 0, 0, False), lost)
        return run, last

    def end_run(self, mark: WriterMark) -> None:
        if self.spool is not None and self.drain(force=True):
            raise ChUnavailable("batches still kept on disk: the run is not marked clean")
        self._mark(mark, clean=True)

    def ingested(self, file: str) -> tuple[int, bool]:
        """(messages committed, complete): in ClickHouse or kept in the spool. Batches go
        out in order, so the spool's position of a capture is never behind the server's:
        with the server away, a capture the spool knows is answered from it. Raises
        ChUnavailable when the server is away and the spool knows nothing of *file* (it
        may be in ClickHouse already: guessing "never seen" would count it twice)."""
        spooled = self._spooled_progress.get(file)
        try:
            self.ensure_schema()
            rows = self.conn.query(
                f"SELECT max(messages), max(complete), count() FROM {self.dbname}.pdns_ingest"
                f" WHERE file = {lit(file)}"
            )
        except ChUnavailable:
            if spooled is None:
                raise
            return spooled
        if spooled is None:
            spooled = (0, False)
        done, whole = (int(rows[0][0]), bool(rows[0][1])) if rows and rows[0][2] else (0, False)
        return max(done, spooled[0]), whole or spooled[1]

    # ------------------------------------------------------------------ compact
    def compact(self, before: int) -> tuple[int, int]:
        """Drop tuples (and NXDOMAIN rows, old batch markers) last seen before *before*,
        and the names no tuple uses; (tuples, names) removed. Waits for ClickHouse's
        deletes (mutations) to finish."""
        self.ensure_schema()
        b = lit(int(before))
        db = self.dbname
        counted = self.conn.query(
            f"SELECT count(), uniqExact(rname) FROM (SELECT rname FROM {db}.pdns_rrset"
            f" WHERE rname >= {LOW} GROUP BY rname, rrtype, rdata, bailiwick"
            f" HAVING maxMerge(time_last) < {b})"
        )
        tuples = int(counted[0][0])
        names_before = int(self.conn.query(f"SELECT uniqExact(rrname) FROM {db}.pdns_names")[0][0])
        for table in schema.AGGREGATING:
            _plain, _agg, order = schema.AGGREGATING[table]
            last = "last_seen" if table == "pdns_sensors" else "time_last"
            if table == "pdns_sensors":  # only the old batch markers
                cond = f"sensor < {LOW} AND sensor IN (SELECT sensor FROM {db}.{table}"
                cond += f" GROUP BY sensor HAVING maxMerge({last}) < {b})"
            else:
                cond = f"({order}) IN (SELECT {order} FROM {db}.{table}"
                cond += f" GROUP BY {order} HAVING maxMerge({last}) < {b})"
            for conn in self.shards or [self.conn]:
                # a key's rows are all on one shard: the shard's own table decides
                local = cond.replace(f"{db}.{table} ", f"{db}.{self._local(table)} ")
                conn.query(f"ALTER TABLE {db}.{self._local(table)} DELETE WHERE {local}")
                self._wait_mutations(conn, self._local(table))
        for conn in self.shards or [self.conn]:
            conn.query(
                f"ALTER TABLE {db}.{self._local('pdns_names')} DELETE WHERE rrname NOT IN"
                f" (SELECT {RRNAME} FROM {db}.pdns_rrset GROUP BY rname)"
            )
            self._wait_mutations(conn, self._local("pdns_names"))
        names_after = int(self.conn.query(f"SELECT uniqExact(rrname) FROM {db}.pdns_names")[0][0])
        return tuples, max(names_before - names_after, 0)

    def _wait_mutations(self, conn: Conn, table: str) -> None:
        deadline = time.monotonic() + MUTATION_WAIT
        while time.monotonic() < deadline:
            rows = conn.query(
                "SELECT count() FROM system.mutations WHERE database = "
                f"{lit(self.dbname)} AND table = {lit(table)} AND is_done = 0"
            )
            if not int(rows[0][0]):
                return
            time.sleep(0.05)
        raise ChUnavailable(f"ClickHouse: deletes on {table} still running after {MUTATION_WAIT} s")

    # ------------------------------------------------------------------ reading
    def rrset(
        self,
        name: str,
        rrtype: int | None = None,
        bailiwick: str | None = None,
        fences: Fences = NO_FENCES,
        limit: int = 10000,
        offset: int = 0,
    ) -> list[Record]:
        """By owner name: exact, ``*.example.com`` (below it) or ``www.example.*``."""
        name = name.lower()
        if name.startswith("*."):
            lo, hi = prefix_range(reverse_name(name[2:]))
            where = f"rname > {lit(lo)} AND rname < {lit(hi)}"
        elif name.endswith(".*") or name.endswith(".*."):
            rp = reverse_name(name[: name.rindex("*")])
            where = f"(rname = {lit(rp)} OR endsWith(rname, {lit('.' + rp)}))"
        else:
            where = f"rname = {lit(reverse_name(name))}"
        if bailiwick is not None:
            where += f" AND bailiwick = {lit(bailiwick.lower().rstrip('.') + '.')}"
        return self._select("pdns_rrset", where, rrtype, fences, limit, offset)

    def rdata_ip(
        self, lo: bytes, hi: bytes, fences: Fences = NO_FENCES, limit: int = 10000, offset: int = 0
    ) -> list[Record]:
        where = f"pkey >= {lit(ADDRESS + lo)} AND pkey <= {lit(ADDRESS + hi)}"
        return self._select("pdns_rdata", where, None, fences, limit, offset)

    def rdata_name(
        self,
        name: str,
        rrtype: int | None = None,
        fences: Fences = NO_FENCES,
        limit: int = 10000,
        offset: int = 0,
    ) -> list[Record]:
        """Records whose rdata names *name* (CNAME/NS/PTR/DNAME targets, MX, SRV)."""
        name = name.lower()
        if name.startswith("*."):
            lo, hi = prefix_range(RDATA_NAME + reverse_name(name[2:]))
            where = f"pkey > {lit(lo)} AND pkey < {lit(hi)}"
        else:
            where = f"pkey = {lit(RDATA_NAME + reverse_name(name))}"
        return self._select("pdns_rdata", where, rrtype, fences, limit, offset)

    def keyword(self, word: str, limit: int = 1000) -> list[str]:
        """Observed names containing *word* in their A-label or U-label form (3+ chars)."""
        word = word.lower()
        if len(word) < 3:
            raise ValueError("a keyword needs at least 3 characters")
        like = lit("%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        rows = self.conn.query(
            f"SELECT DISTINCT rrname FROM {self.dbname}.pdns_names"
            f" WHERE rrname LIKE {like} OR uname LIKE {like} LIMIT {int(limit)}"
        )
        return [str(r[0]) for r in rows]

    def names_first_last(self, names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        out: dict[str, tuple[int, int, int]] = {}
        items = list(names)
        for i in range(0, len(items), 1000):
            keys = lit([reverse_name(n) for n in items[i : i + 1000]])
            for rname, first, last, n in self.conn.query(
                f"SELECT rname, {_AGG} FROM {self.dbname}.pdns_rrset WHERE rname IN {keys}"
                " GROUP BY rname"
            ):
                out[reverse_name(str(rname))] = (int(first), int(last), int(n))
        return out

    def names_first_seen_since(self, since: int, limit: int = 1_000_000) -> list[tuple[str, int]]:
        """Names whose earliest tuple was first seen at or after *since* (UNIX seconds),
        (name, time_first), earliest first (newly observed domains)."""
        rows = self.conn.query(
            f"SELECT {RRNAME} AS name, tf FROM (SELECT rname, minMerge(time_first) AS tf"
            f" FROM {self.dbname}.pdns_rrset WHERE rname >= {LOW} GROUP BY rname"
            f" HAVING tf >= {int(since)}) ORDER BY tf, name LIMIT {int(limit)}"
        )
        return [(str(n), int(f)) for n, f in rows]

    def earliest_below(self, domain: str) -> int | None:
        """The least time_first of *domain* and the names below it; None: never seen."""
        lo, hi = prefix_range(reverse_name(domain.lower().rstrip(".") + "."))
        return self._earliest(f"rname >= {lit(lo)} AND rname < {lit(hi)}")

    def observed_since(self) -> int | None:
        """The least time_first of the whole store; None when it is empty."""
        return self._earliest(f"rname >= {LOW}")

    def _earliest(self, where: str) -> int | None:
        rows = self.conn.query(
            f"SELECT minMerge(time_first), count() FROM {self.dbname}.pdns_rrset WHERE {where}"
        )
        return int(rows[0][0]) if rows and int(rows[0][1]) else None

    def nxdomain(self, name: str, limit: int = 1000) -> list[tuple[str, int, int, int, int]]:
        rows = self.conn.query(
            f"SELECT rrname, rrtype, {_AGG} FROM {self.dbname}.pdns_nxdomain"
            f" WHERE rrname = {lit(name.lower().rstrip('.') + '.')}"
            f" GROUP BY rrname, rrtype ORDER BY rrtype LIMIT {int(limit)}"
        )
        return [(str(a), int(b), int(c), int(d), int(e)) for a, b, c, d, e in rows]

    def sensors(self) -> list[tuple[str, int, int]]:
        rows = self.conn.query(
            "SELECT sensor, sumMerge(observations), maxMerge(last_seen)"
            f" FROM {self.dbname}.pdns_sensors"
            f" WHERE sensor >= {LOW} GROUP BY sensor ORDER BY sensor"
        )
        return [(str(s), int(n), int(last)) for s, n, last in rows]

    def stats(self) -> tuple[int, int]:
        """(tuples, distinct names)"""
        rows = self.conn.query(
            "SELECT count(), uniqExact(rname) FROM (SELECT rname FROM"
            f" {self.dbname}.pdns_rrset WHERE rname >= {LOW}"
            " GROUP BY rname, rrtype, rdata, bailiwick)"
        )
        return int(rows[0][0]), int(rows[0][1])

    def distinct(self, what: str, rrtype: int | None = None) -> Iterator[tuple[str, int]]:
        """(rrname or rdata, rrtype) pairs, each once (the DNSDB flex search's input)."""
        col = RRNAME if what == "rrnames" else "rdata"
        where = " AND rrtype = " + lit(rrtype) if rrtype is not None else ""
        for value, rtype in self.conn.stream(
            f"SELECT DISTINCT {col}, rrtype FROM {self.dbname}.pdns_rrset"
            f" WHERE rname >= {LOW}{where}"
        ):
            yield str(value), int(rtype)

    def _select(
        self,
        table: str,
        where: str,
        rrtype: int | None,
        fences: Fences,
        limit: int,
        offset: int,
    ) -> list[Record]:
        if rrtype is not None:
            where += f" AND rrtype = {lit(rrtype)}"
        having = []
        for col, op, v in (
            ("tf", "<=", fences.first_before),
            ("tf", ">=", fences.first_after),
            ("tl", "<=", fences.last_before),
            ("tl", ">=", fences.last_after),
        ):
            if v is not None:
                having.append(f"{col} {op} {lit(int(v))}")
        keys = "rname, rrtype, rdata, bailiwick"
        if table == "pdns_rdata":
            keys = "pkey, " + keys
        sql = (
            f"SELECT rname, rrtype, rdata, bailiwick, {_AGG} FROM {self.dbname}.{table}"
            f" WHERE {where} GROUP BY {keys}"
            + (f" HAVING {' AND '.join(having)}" if having else "")
            + f" ORDER BY {_ORDER} LIMIT {int(offset)}, {int(limit)}"
        )
        return [_record(r) for r in self.conn.query(sql)]

    # ------------------------------------------------------------------ portable
    def export_records(self) -> Iterator[Record]:
        """Every tuple, streamed in rrname order."""
        sql = (
            f"SELECT rname, rrtype, rdata, bailiwick, {_AGG} FROM {self.dbname}.pdns_rrset"
            f" WHERE rname >= {LOW} GROUP BY rname, rrtype, rdata, bailiwick"
            f" ORDER BY {RRNAME}, rrtype, rdata, bailiwick"
        )
        for r in self.conn.stream(sql):
            yield _record(r)

    def export_nxdomain(self) -> Iterator[NxRecord]:
        """Every NXDOMAIN row, streamed in (rrname, rrtype) order."""
        for r in self.conn.stream(
            f"SELECT rrname, rrtype, {_AGG} FROM {self.dbname}.pdns_nxdomain"
            f" WHERE rrname >= {LOW} GROUP BY rrname, rrtype ORDER BY rrname, rrtype"
        ):
            yield NxRecord(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]))

    def import_records(self, records: Iterable[Record], batch: int = 50_000) -> int:
        """Merge *records* as ``write`` does, one batch (exactly once) every *batch*; the
        number of records read. Batches the server does not take because it is away are
        kept in the spool (this process's files there: ``pdns_spool.written_by``). Raises
        StoreError when the server refuses a batch or the full spool drops it (the reason;
        the batches before it stay imported or kept), ChUnavailable when the server is
        away and there is no spool."""
        self._watched, self._refused = {}, {}
        try:
            n = self._import(records, batch)
            if self.spool is not None and len(self.spool):
                self.drain(force=True)
                self._check_refused(n)
            return n
        finally:
            self._watched, self._refused = {}, {}

    def _check_refused(self, records: int) -> None:
        if self._refused:
            bid, why = next(iter(self._refused.items()))
            records = self._watched.get(bid, records)
            raise StoreError(f"a batch of {records} records is not imported (nothing of it): {why}")

    def _import_batch(self, tuples: Tuples, records: int) -> None:
        batch = self._batch(tuples)
        bid = batch["id"]
        self._watched[bid] = records
        try:
            self._put(batch)
        except ChUnavailable:
            raise
        except StoreError as e:
            self._refused[bid] = f"ClickHouse refused it: {e}"
        self._check_refused(records)

    def _import(self, records: Iterable[Record], batch: int) -> int:
        n = done = 0
        tuples: Tuples = {}
        for r in records:
            n += 1
            key = (r.rrname, r.rrtype, r.rdata, r.bailiwick)
            have = tuples.get(key)
            if have is None:
                tuples[key] = [r.time_first, r.time_last, r.count]
            else:
                have[0], have[1] = min(have[0], r.time_first), max(have[1], r.time_last)
                have[2] += r.count
            if len(tuples) >= batch:
                self._import_batch(tuples, n - done)
                tuples, done = {}, n
        if tuples:
            self._import_batch(tuples, n - done)
        return n


PIVOT_TYPES = frozenset((1, 28, *NAME_RDATA))
_MARKER_KEY = {"pdns_rrset": "rname", "pdns_rdata": "pkey", "pdns_nxdomain": "rrname",
               "pdns_sensors": "sensor"}  # fmt: skip


def run_base(sensor: str) -> int:
    """The run ids of *sensor*'s tap are this + 1, 2, ...: 31 bits of its CRC-32 (never 0)
    above 32 bits of count, so two sensors' runs do not share an id (unless their CRCs
    collide: about n**2 / 2**32 for n sensors), which matters in a ``pdns_tap_runs``
    created before runs were per sensor (``ORDER BY run``: rows of one id are merged as
    one); a new table is ``ORDER BY (sensor, run)``. The empty sensor (a store opened
    without one): 0, the ids of before."""
    if not sensor:
        return 0
    return (1 + zlib.crc32(sensor.encode()) % 0x7FFFFFFF) << 32


def _tuple_columns(tuples: Any) -> tuple[list[Sequence[Any]], list[str], list[str]]:
    """A batch's tuples (the ``Tuples`` dict, or the lists of a batch kept on disk) as
    the 7 columns of the ``_src`` tables (rrname, rrtype, rdata, bailiwick, time_first,
    time_last, count), and the distinct names with their U-label forms ("" when not an
    IDN). Only a transposition: the keys are derived by ClickHouse (``pdns_chschema``);
    the per-tuple Python work is what limits ingest."""
    if not tuples:
        return [[] for _ in range(7)], [], []
    # one comprehension per column: ~8x faster than zip(*rows) over 300k rows
    if isinstance(tuples, dict):
        keys, vals = list(tuples), list(tuples.values())
        cols: list[Sequence[Any]] = [[k[i] for k in keys] for i in range(4)]
        cols += [[v[i] for v in vals] for i in range(3)]
    else:
        cols = [[t[i] for t in tuples] for i in range(7)]
    names = list(set(cols[0]))
    unames = [""] * len(names)
    for i, n in enumerate(names):
        if "xn--" in n:
            unames[i] = unicode_if_idn(n)
    return cols, names, unames


def _insert(
    conn: Conn, table: str, columns: Sequence[Sequence[Any]], marker: tuple[Any, ...]
) -> None:
    """*columns* and the batch *marker* row into *table*'s input table, as one block."""
    data = [[*c, v] for c, v in zip(columns, marker, strict=True)]
    conn.insert_columns(_input(table), _input_columns(table), data)


def _input(table: str) -> str:
    """The table a batch's rows for *table* are inserted into (its view fills *table*)."""
    return table + ("_src" if table in schema.FROM_TUPLES else "_in")


def _input_columns(table: str) -> list[str]:
    return schema.TUPLE_COLUMNS if table in schema.FROM_TUPLES else schema.columns(table)


def _shard_key(table: str, columns: Sequence[Sequence[Any]]) -> list[str | bytes | None]:
    """Per row, the key deciding its shard: the stored key (reversed name, pivot key:
    as releases before the keys moved into SQL placed them); None: no row there."""
    if table == "pdns_rrset":
        return [_reverse(n) for n in columns[0]]
    if table == "pdns_rdata":
        return [
            _pkey(t, r) if t in PIVOT_TYPES else None
            for t, r in zip(columns[1], columns[2], strict=True)
        ]
    return list(columns[0])


def _reverse(name: str) -> str:
    if name.endswith(".") and ".." not in name:
        return ".".join(name[:-1].split(".")[::-1]) + "."
    return reverse_name(name)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for col, v in zip(out, row, strict=True):
            col.append(v)
    return out


def _pkey(rtype: int, rd: str) -> str | bytes | None:
    if rtype in (1, 28):
        key = ip_key(rd)
        return None if key is None else ADDRESS + key
    target = rdata_name(rtype, rd)
    return None if target is None else RDATA_NAME + reverse_name(target)


def _record(r: tuple[Any, ...]) -> Record:
    rname, rrtype, rd, bw, first, last, n = r
    return Record(reverse_name(str(rname)), int(rrtype), str(rd), str(bw), int(first), int(last),
                  int(n))  # fmt: skip
