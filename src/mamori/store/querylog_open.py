"""Which query-log store a config means: SQLite (default, ``[store] path``) or ClickHouse
(``[store] url``). The CLI and the web app factory open it here; the console, the APIs,
the geo page, the feed preview and the brand watch see the ``QueryLogReader`` Protocol,
the writer thread the ``QueryLogStore`` Protocol (``store.base``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mamori import config as cfgmod
from mamori.errors import StoreError
from mamori.store.base import QueryLogReader, QueryLogStore
from mamori.store.ch_conn import Conn

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # static conformance: mypy checks both backends against the Protocols
    from mamori.store.querylog_chreader import ClickHouseQueryReader
    from mamori.store.querylog_clickhouse import QueryLogClickHouse
    from mamori.store.querylog_sqlite import SQLiteQueryReader
    from mamori.store.sqlite import SQLiteStore

    def _conforms(
        ch: QueryLogClickHouse, lite: SQLiteStore, r1: ClickHouseQueryReader, r2: SQLiteQueryReader
    ) -> tuple[list[QueryLogStore], list[QueryLogReader]]:
        return [ch, lite], [r1, r2]


def alerts_path(cfg: cfgmod.Config) -> Path:
    """This node's alert history (SQLite, kept with or without ``[store] url``)."""
    return cfg.store.path.parent / "alerts.sqlite"


def spool_dir(cfg: cfgmod.Config) -> Path:
    """Where the query-log batches wait while ClickHouse is away."""
    return cfg.store.path.parent / "querylog-spool"


def settle(cfg: cfgmod.Config) -> float:
    """The ClickHouse live view's lag: a batch may arrive this late (two flushes + 1 s)."""
    return 2 * cfg.store.flush_interval + 1.0


def open_query_store(cfg: cfgmod.Config) -> QueryLogStore:
    """The writer's store of *cfg*. ClickHouse: a server that is down does not stop the
    caller (batches are kept in the spool). Raises StoreError."""
    if cfg.store.url is None:
        from mamori.store.sqlite import SQLiteStore

        return SQLiteStore(cfg.store.path, cfg.server.node_name)
    from mamori.store.ch_conn import DriverConn, read_password
    from mamori.store.pdns_spool import Spool
    from mamori.store.querylog_clickhouse import QueryLogClickHouse

    password = read_password(cfg.store.url, cfg.store.password_file)
    conn = DriverConn(cfg.store.url, password, timeout=5.0)
    spool = Spool(spool_dir(cfg), cfg.store.spool_size, "query log")
    return QueryLogClickHouse(conn, cfg.server.node_name, spool, True, *_cluster(cfg, password))


def _cluster(cfg: cfgmod.Config, password: str) -> tuple[str, Callable[[str, int], Conn] | None]:
    """(``[store] cluster``, a function opening its shards) for ``QueryLogClickHouse``."""
    from mamori.store.ch_cluster import shard_connector

    if not cfg.store.cluster or cfg.store.url is None:
        return "", None
    return cfg.store.cluster, shard_connector(cfg.store.url, password)


def open_admin_store(cfg: cfgmod.Config) -> QueryLogClickHouse:
    """*cfg*'s ClickHouse query log for an administrator's command (no spool, no schema
    creation; connects lazily). Raises StoreError."""
    from mamori.store.ch_conn import DriverConn, read_password
    from mamori.store.querylog_clickhouse import QueryLogClickHouse

    assert cfg.store.url is not None
    password = read_password(cfg.store.url, cfg.store.password_file)
    conn = DriverConn(cfg.store.url, password, timeout=30.0)
    return QueryLogClickHouse(conn, cfg.server.node_name, None, False, *_cluster(cfg, password))


def alert_sink(cfg: cfgmod.Config) -> Callable[[tuple[Any, ...]], None]:
    """With ``[store] url``: a function putting one alert (time, rule, severity, subject,
    message, delivered, failed) into ClickHouse's ``alerts`` table with this node's name
    (errors logged: the local history keeps it). One connection per alert (alerts are
    throttled: a few per minute at most)."""
    from mamori.store.ch_conn import DriverConn, read_password
    from mamori.store.querylog_clickhouse import QueryLogClickHouse

    assert cfg.store.url is not None
    password = read_password(cfg.store.url, cfg.store.password_file)
    url = cfg.store.url

    def put(alert: tuple[Any, ...]) -> None:
        store = QueryLogClickHouse(DriverConn(url, password, timeout=5.0), cfg.server.node_name,
                                   None, False, *_cluster(cfg, password))  # fmt: skip
        try:
            store.put_alert(alert)
        except StoreError as e:
            log.error("alerts: not written to %s: %s", url, e)
        finally:
            store.close()

    return put


def open_query_reader(cfg: cfgmod.Config) -> QueryLogReader:
    """The readers' view of *cfg*'s query log (connects lazily). Raises StoreError."""
    if cfg.store.url is None:
        from mamori.store.querylog_sqlite import SQLiteQueryReader

        return SQLiteQueryReader(cfg.store.path, alerts_path(cfg))
    from mamori.store.ch_conn import DriverConn, read_password
    from mamori.store.querylog_chreader import ClickHouseQueryReader

    url = cfg.store.url
    password = read_password(url, cfg.store.password_file)
    return ClickHouseQueryReader(lambda: DriverConn(url, password), settle(cfg))


def check(cfg: cfgmod.Config) -> list[str]:
    """``mamori check``: where the query log is; for ClickHouse the server's version and
    the schema state (tables present, created). Raises StoreError."""
    if cfg.store.url is None:
        return [f"store:     SQLite {cfg.store.path} (node {cfg.server.node_name})"]
    from mamori.store import querylog_chschema as schema
    from mamori.store.ch_conn import DriverConn, lit, read_password
    from mamori.store.querylog_clickhouse import QueryLogClickHouse

    url = cfg.store.url
    password = read_password(url, cfg.store.password_file)
    conn = DriverConn(url, password, timeout=5.0)
    cluster, connect = _cluster(cfg, password)
    objects = schema.objects(conn.database, cluster)
    store = QueryLogClickHouse(conn, cfg.server.node_name, None, False, cluster, connect)
    try:
        version = ".".join(str(x) for x in conn.version())
        known = conn.query(
            f"SELECT count() FROM system.databases WHERE name = {lit(conn.database)}"
        )
        have = store.tables() if int(known[0][0]) else set()
        missing = [t for t, _ in objects if t not in have]
        created = store.ensure_schema()  # also refuses a cluster's database and the reverse
    finally:
        store.close()
    total = len(objects)
    return [
        f"store:     ClickHouse {url}, server {version} (node {cfg.server.node_name})",
        f"  schema:  {total - len(missing)} tables present, {len(created)} created",
    ]


def brand_source(cfg: cfgmod.Config) -> Path | QueryLogReader | None:
    """What the brand watch reads the query log from: the SQLite file (None while it does
    not exist), or the ClickHouse reader."""
    if cfg.store.url is None:
        return cfg.store.path if cfg.store.path.exists() else None
    return open_query_reader(cfg)


def log_source(cfg: cfgmod.Config) -> Path | QueryLogReader:
    """What the feed preview replays and the running brand watch reads: the SQLite file
    (read when it exists) or the ClickHouse reader."""
    return cfg.store.path if cfg.store.url is None else open_query_reader(cfg)
