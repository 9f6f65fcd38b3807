"""Which passive DNS store a config means: SQLite (default) or ClickHouse (``[pdns] url``).

The CLI and the web app factory open the store here; everything else sees the
``PdnsStore`` Protocol (``store.pdns_base``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mamori import config as cfgmod
from mamori.store.ch_cluster import shard_connector
from mamori.store.pdns_base import PdnsFull, PdnsStore

if TYPE_CHECKING:  # static conformance: mypy checks both backends against the Protocols
    from mamori.store.pdns_base import PdnsPortable
    from mamori.store.pdns_clickhouse import PdnsClickHouse
    from mamori.store.pdns_sqlite import PdnsSQLite

    def _conforms(ch: PdnsClickHouse, lite: PdnsSQLite) -> tuple[PdnsStore, PdnsPortable]:
        both: list[PdnsStore] = [ch, lite]
        return both[0], ch


def is_clickhouse(cfg: cfgmod.Config) -> bool:
    return cfg.pdns.url is not None


def local_dir(cfg: cfgmod.Config) -> Path:
    """Where this node keeps passive DNS files of its own: the SQLite store's directory,
    or (ClickHouse) ``pdns-spool/`` beside the [store] path: batches waiting for the
    server, the tap's crash note."""
    if cfg.pdns.url is None:
        return cfgmod.pdns_path(cfg).parent
    return cfg.store.path.parent / "pdns-spool"


def note_path(cfg: cfgmod.Config) -> Path:
    """The resolver tap's ``ReceivedNote`` file (store/runs.py)."""
    if cfg.pdns.url is None:
        p = cfgmod.pdns_path(cfg)
        return p.with_name(p.name + "-answers")
    return local_dir(cfg) / "tap-answers"


def describe(cfg: cfgmod.Config) -> str:
    return str(cfg.pdns.url) if cfg.pdns.url is not None else str(cfgmod.pdns_path(cfg))


def open_pdns(
    cfg: cfgmod.Config, readonly: bool = False, writer: bool = True, sensor: str = ""
) -> PdnsFull:
    """The passive DNS store of *cfg*. ClickHouse: connects lazily (a server that is down
    does not stop the caller: writes are kept in the spool); *writer* False (the web app:
    lookups only): no spool, the writers of this node send what is kept; *sensor*: the
    resolver tap's, whose runs (crash accounting) the store records (a fleet shares one
    ClickHouse; a SQLite file is one node's). Raises StoreError."""
    if cfg.pdns.url is None:
        from mamori.store.pdns_sqlite import PdnsSQLite

        return PdnsSQLite(cfgmod.pdns_path(cfg), readonly=readonly)
    from mamori.store.ch_conn import DriverConn, read_password
    from mamori.store.pdns_clickhouse import PdnsClickHouse
    from mamori.store.pdns_spool import Spool

    url = cfg.pdns.url
    password = read_password(url, cfg.pdns.password_file)
    conn = DriverConn(url, password)
    spool = Spool(local_dir(cfg), cfg.pdns.spool_size) if writer and not readonly else None
    connect = shard_connector(url, password)
    return PdnsClickHouse(conn, spool, readonly, cfg.pdns.cluster, connect, sensor)


def open_pdns_reader(cfg: cfgmod.Config) -> PdnsFull | None:
    """The store for lookups only (brand watch, NOD, their pages): None while the SQLite
    file does not exist yet (``mamori pdns ingest`` or the tap creates it). Raises
    StoreError."""
    if cfg.pdns.url is None and not cfgmod.pdns_path(cfg).exists():
        return None
    return open_pdns(cfg, readonly=True, writer=False)


def check(cfg: cfgmod.Config) -> list[str]:
    """``mamori check``: lines saying where the store is; for ClickHouse, the server's
    version and the schema state (tables present, created, missing). Raises StoreError
    (cannot connect, refused)."""
    if cfg.pdns.url is None:
        return [f"pdns:      SQLite {cfgmod.pdns_path(cfg)}"]
    from mamori.store import pdns_chschema as schema
    from mamori.store.ch_conn import DriverConn, read_password
    from mamori.store.pdns_clickhouse import PdnsClickHouse

    url = cfg.pdns.url
    password = read_password(url, cfg.pdns.password_file)
    conn = DriverConn(url, password, timeout=5.0)
    try:
        version = conn.version()
        cluster = cfg.pdns.cluster
        store = PdnsClickHouse(conn, None, True, cluster, shard_connector(url, password))
        have = store.tables() if _has_db(conn) else set()
        objects = (
            [*schema.ddl(conn.database, version, "_shard"),
             *schema.distributed(conn.database, cluster)]
            if cluster
            else schema.ddl(conn.database, version)
        )  # fmt: skip
        missing = [t for t, _ in objects if t not in have]
        created = store.ensure_schema() if missing else []
        still = [t for t in missing if t not in created]
    finally:
        conn.close()
    v = ".".join(str(x) for x in version)
    lines = [f"pdns:      ClickHouse {url}, server {v}"]
    present = len(objects) - len(missing)
    lines.append(
        f"  schema:  {present} tables present, {len(created)} created"
        + (f", missing: {', '.join(still)}" if still else "")
    )
    for lack in schema.missing_features(version):
        lines.append(f"  server lacks: {lack}")
    return lines


def _has_db(conn: Any) -> bool:
    from mamori.store.ch_conn import lit

    rows = conn.query(f"SELECT count() FROM system.databases WHERE name = {lit(conn.database)}")
    return bool(int(rows[0][0]))


def distinct_values(store: PdnsStore, what: str, rrtype: int | None) -> Iterator[tuple[str, int]]:
    """(rrname or rdata, rrtype) pairs, each once, of any backend (DNSDB flex search).
    *what*: ``rrnames`` or ``rdata``."""
    own = getattr(store, "distinct", None)
    if own is not None:
        yield from own(what, rrtype)
        return
    db = getattr(store, "db")  # noqa: B009 (SQLite: its connection)
    col = "rrname" if what == "rrnames" else "rdata"
    sql = f"SELECT DISTINCT {col}, rrtype FROM rrset"
    args: list[object] = []
    if rrtype is not None:
        sql += " WHERE rrtype = ?"
        args.append(rrtype)
    for value, rtype in db.execute(sql, args):
        yield str(value), int(rtype)
