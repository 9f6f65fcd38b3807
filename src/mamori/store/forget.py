"""Erase what the store keeps about a client address or network (``mamori store
forget-client``): its query log rows, its block page reports, the alerts about it,
the brand watch's record of it asking for a look-alike.

Rows are matched by the address they hold: an address given matches rows
holding that exact address; a network (``192.0.2.0/24``) matches every row
whose address is in it, including rows kept truncated (``[store]
client_addresses = "truncate"`` keeps ``192.0.2.0``: give the network to erase
them; everyone in that network goes with them). Rows kept without an address
(``"none"``) cannot be told apart and are not touched. Deletion uses SQLite's
``secure_delete`` (the freed pages are zeroed) and then truncates the WAL, so
the erased data does not linger in the files; a running ``mamori serve`` may
keep writing meanwhile (WAL, busy timeout). Aggregates without addresses
(hourly counts, blocked names per hour, the hit log) stay. The audit log is not changed: it records
administrators' actions, not DNS clients.

With ``[store] url`` (ClickHouse) the query log, the blocked clients per hour and the
fleet's copy of the alerts are in ClickHouse: the same rows (the same matching of
addresses) are erased there by ``ALTER TABLE ... DELETE`` mutations, on every shard of
a ``[store] cluster``, and waited for: when ``forget_client_clickhouse`` returns, the
server has carried them out (it removes the replaced parts from disk a few minutes
later: its ``old_parts_lifetime``). The local files are erased as above, and the
batches waiting in the node's query-log spool (``querylog-spool/``, ``rejected/``
included) are rewritten without the client's rows (``forget_client_spool``): run the
command on every node, and once against the fleet's ClickHouse.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mamori.errors import StoreError
from mamori.store.ch_conn import ChUnavailable, lit
from mamori.store.pdns_spool import SUFFIX, Spool

if TYPE_CHECKING:
    from mamori.store.querylog_clickhouse import QueryLogClickHouse

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Target:
    """A table of a store file holding client addresses in *column*; *where*: only the
    rows that are about a client (SQL, no parameters)."""

    file: str  # "" for the query log's own file ([store] path)
    table: str
    column: str
    where: str = "1"


TARGETS = (
    Target("", "query_log", "client"),
    Target("", "block_clients", "client"),  # the console's blocked clients per hour
    Target("reports.sqlite", "reports", "client"),  # web/blockpage.py
    Target("alerts.sqlite", "alerts", "subject", "message LIKE 'client %'"),  # alerts/engine.py
    Target("brand.sqlite", "brand_clients", "client"),  # discovery/brand_store.py
)


# ClickHouse: (table, column, the rows that are about a client) as TARGETS' query log ones
CH_TARGETS = (
    Target("", "query_log", "client"),
    Target("", "block_clients", "client", "hour > 0"),  # never a batch's marker row
    Target("", "alerts", "subject", "message LIKE 'client %'"),
)
CHUNK = 5000  # addresses per mutation


def parse_network(text: str) -> IPNetwork:
    """An address (a /32 or /128) or a network; ValueError otherwise."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _in(value: str, net: IPNetwork) -> bool:
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return False  # "-" ([store] client_addresses = "none") or not an address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.version == net.version and ip in net


def forget_client(store_path: Path, network: str) -> dict[str, int]:
    """Delete the rows about *network* (an address or a CIDR network) from every store
    file that exists; {file name: rows deleted}. ValueError for a bad *network*."""
    net = parse_network(network)
    out: dict[str, int] = {}
    for t in TARGETS:
        path = store_path.parent / t.file if t.file else store_path
        if not path.exists():
            continue
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            if not db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t.table,)
            ).fetchone():
                continue
            db.execute("PRAGMA secure_delete = ON")
            values = [
                v
                for (v,) in db.execute(f"SELECT DISTINCT {t.column} FROM {t.table} WHERE {t.where}")
                if isinstance(v, str) and _in(v, net)
            ]
            deleted = 0
            db.execute("BEGIN IMMEDIATE")
            try:
                for v in values:
                    deleted += db.execute(
                        f"DELETE FROM {t.table} WHERE {t.column} = ? AND {t.where}", (v,)
                    ).rowcount
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            out[path.name] = out.get(path.name, 0) + deleted
        finally:
            db.close()
    return out


def forget_client_clickhouse(
    store: QueryLogClickHouse, network: str, timeout: float = 600.0
) -> dict[str, int]:
    """Delete the rows about *network* from the ClickHouse query log, blocked clients per
    hour and alerts (every shard), and wait (at most *timeout* seconds) until the server
    has carried the deletes out; {"DB.TABLE": rows deleted}. ValueError for a bad
    *network*; StoreError (server away or refusing, deletes not done in time)."""
    net = parse_network(network)
    db = store.db
    have = store.tables()
    targets = [t for t in CH_TARGETS if t.table in have]
    out: dict[str, int] = {f"{db}.{t.table}": 0 for t in targets}
    down: list[str] = []
    servers = store.servers()
    for conn in servers:  # a shard that does not answer: the others are done all the same
        try:
            for t in targets:
                table = store.local(t.table)
                sql = f"SELECT DISTINCT {t.column} FROM {db}.{table} WHERE {t.where}"
                values = sorted(
                    v for (v,) in conn.stream(sql) if isinstance(v, str) and _in(v, net)
                )
                for i in range(0, len(values), CHUNK):
                    cond = f"{t.column} IN {lit(tuple(values[i : i + CHUNK]))} AND {t.where}"
                    n = conn.query(f"SELECT count() FROM {db}.{table} WHERE {cond}")[0][0]
                    out[f"{db}.{t.table}"] += int(n)
                    conn.query(f"ALTER TABLE {db}.{table} DELETE WHERE {cond}")
        except ChUnavailable as e:
            if len(servers) == 1:
                raise
            down.append(str(e))
    if down:
        raise StoreError(
            f"{len(down)} of {len(servers)} shards did not answer ({'; '.join(down)}): the"
            " shards that answered are done (their deletes are under way); run the command"
            " again when every shard answers (it deletes the rest)"
        )
    if not store.wait_mutations(timeout):
        raise StoreError(
            f"ClickHouse {db}: the deletes were not carried out within {timeout:.0f} s"
            " (see system.mutations; they go on in the background)"
        )
    return out


SPOOL_CLIENT = 2  # a kept batch's row: [id, time, client, ...] (querylog_clickhouse)


def forget_client_spool(directory: Path, network: str, wait: float = 30.0) -> int | None:
    """Rewrite the query-log batches waiting in the spool *directory* (and those set
    aside in its ``rejected/``) without the rows about *network*, each atomically (a
    new file renamed over the old); the rows deleted, None when there is no spool. The
    batches' aggregates are computed from their rows when they are sent, so they
    follow. Holds the spool's sender lock (a running writer sends nothing meanwhile),
    waiting for it at most *wait* seconds. ValueError for a bad *network*; StoreError
    (the lock not had in time); OSError (disk)."""
    net = parse_network(network)
    if not directory.is_dir():
        return None
    spool = Spool(directory, 1 << 62, "query log")
    deadline = time.monotonic() + wait
    while True:
        with spool.sending() as mine:
            if mine:
                paths = [*spool.files(), *sorted((directory / "rejected").glob("*" + SUFFIX))]
                return sum(_forget_in_batch(spool, p, net) for p in paths)
        if time.monotonic() >= deadline:
            raise StoreError(
                f"query-log spool {directory}: busy (the node is sending it) for {wait:.0f} s:"
                " run the command again"
            )
        time.sleep(0.2)


def _forget_in_batch(spool: Spool, path: Path, net: IPNetwork) -> int:
    try:
        batch = spool.read(path)
    except FileNotFoundError:
        return 0  # sent meanwhile
    except ValueError as e:
        raise StoreError(f"{path}: damaged, not checked ({e}): look at it or delete it") from e
    rows = batch.get("rows") or []
    keep = [r for r in rows if not (isinstance(r[SPOOL_CLIENT], str) and _in(r[SPOOL_CLIENT], net))]
    if len(keep) == len(rows):
        return 0
    batch["rows"] = keep
    spool.rewrite(path, batch)
    return len(rows) - len(keep)
