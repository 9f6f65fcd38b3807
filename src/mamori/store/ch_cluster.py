"""A ClickHouse cluster (``cluster = "NAME"``, a name of the server's ``remote_servers``)
as mamori uses it without ZooKeeper: mamori runs the DDL on every node itself (``ON
CLUSTER`` needs ZooKeeper) and writes each shard's rows to that shard directly (exactly
once per shard); reads go through ``Distributed`` tables under the usual names."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace

from mamori.config.clickhouse import ClickHouseUrl
from mamori.errors import StoreError
from mamori.store.ch_conn import Conn, lit


def shard_connector(url: ClickHouseUrl, password: str) -> Callable[[str, int], Conn]:
    """Opens a cluster's shard (host and port from ``system.clusters``) with *url*'s
    database, user and password."""
    from mamori.store.ch_conn import DriverConn

    def connect(host: str, port: int) -> Conn:
        return DriverConn(replace(url, host=host, port=port), password)

    return connect


def connect_shards(
    conn: Conn, cluster: str, connect: Callable[[str, int], Conn] | None
) -> list[Conn]:
    """One connection per shard of *cluster* (its first replica), in shard order, as
    *conn*'s server knows the cluster. Raises StoreError (no such cluster, no
    *connect*), ChUnavailable."""
    rows = conn.query(
        "SELECT shard_num, host_address, port FROM system.clusters"
        f" WHERE cluster = {lit(cluster)} ORDER BY shard_num, replica_num"
    )
    first: dict[int, tuple[str, int]] = {}
    for num, host, port in rows:
        first.setdefault(int(num), (str(host), int(port)))
    if not first:
        raise StoreError(f"ClickHouse: no cluster {cluster!r} in remote_servers")
    if connect is None:
        raise StoreError("ClickHouse cluster: no way to connect to the shards")
    return [connect(h, p) for _n, (h, p) in sorted(first.items())]


def shard_of(key: str, n: int) -> int:
    """The shard (0 .. *n*-1) of *key*: crc32, the same in every process."""
    return zlib.crc32(key.encode()) % n
