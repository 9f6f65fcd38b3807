"""The query, hit and alert logs in ClickHouse, in SQL that Debian's 18.16 and current
releases run.

* ``query_log``: one row per answered query, ``MergeTree`` partitioned by UTC day
  (``intDiv(toUInt32(ts), 86400)``: retention drops whole days), ordered by ``id``
  (the row's time in microseconds made strictly increasing per writer: a time range is
  a key range). ``node`` is the ``[server] node_name``; ``batch`` the writer's batch id
  (a batch re-sent after a lost reply is found by it and not inserted twice).
* ``query_counts``, ``block_counts``, ``block_clients``: the per-hour aggregates the
  console's overview reads (``SummingMergeTree``: reads ``sum()`` them, exact before
  and after merges), per node.
* ``policy_hits``: hit counters per (zone, trigger, action, node): an
  ``AggregatingMergeTree`` (sum, min first, max last) filled from the ``Null`` table
  ``policy_hits_in`` by a materialized view, row by row (one INSERT block: one part).
* ``writer_runs``: the writer's crash accounting, per node (``ReplacingMergeTree``).
* ``alerts``: the alert history of every node.

On a cluster (``[store] cluster``) each node has the tables above as local ``*_shard``
tables and ``Distributed`` tables under the usual names (what the reads use).

Each insert into an aggregate carries a marker row (``node`` = 0x00 + the batch id,
``hour`` 0, a sum of 1: SummingMergeTree drops rows whose sums are all 0 when it merges)
in the same block, so a batch whose marker is there is not counted again. Reads skip
hour 0.
"""

from __future__ import annotations

MARKER = "\x00"  # first byte of a marker row's node (no node name has it)

QUERY_LOG = [
    ("id", "UInt64"), ("ts", "Float64"), ("node", "String"), ("client", "String"),
    ("qname", "String"), ("qtype", "UInt16"), ("rcode", "Int16"), ("answer", "String"),
    ("latency_us", "UInt32"), ("upstream", "String"), ("cache_hit", "UInt8"),
    ("transport", "String"), ("policy_zone", "String"), ("policy_rule", "String"),
    ("policy_trigger", "String"), ("policy_action", "String"), ("outcome", "String"),
    ("reason", "String"), ("client_group", "String"), ("device", "String"),
    ("batch", "String"),
]  # fmt: skip

# table -> (columns, engine)
SUMMING = {
    "query_counts": (
        [("hour", "UInt32"), ("node", "String"), ("queries", "UInt64"), ("blocked", "UInt64")],
        "SummingMergeTree((queries, blocked)) ORDER BY (hour, node)",
    ),
    "block_counts": (
        [("hour", "UInt32"), ("node", "String"), ("zone", "String"), ("qname", "String"),
         ("n", "UInt64")],
        "SummingMergeTree((n)) ORDER BY (hour, node, zone, qname)",
    ),
    "block_clients": (
        [("hour", "UInt32"), ("node", "String"), ("zone", "String"), ("client", "String"),
         ("client_group", "String"), ("n", "UInt64")],
        "SummingMergeTree((n)) ORDER BY (hour, node, zone, client, client_group)",
    ),
}  # fmt: skip
HITS_IN = [("zone", "String"), ("trigger", "String"), ("action", "String"), ("node", "String"),
           ("hits", "UInt64"), ("first_hit", "Float64"), ("last_hit", "Float64")]  # fmt: skip

TABLES = ["query_log", *SUMMING, "policy_hits", "policy_hits_in", "policy_hits_mv",
          "writer_runs", "alerts"]  # fmt: skip


def _defs(cols: list[tuple[str, str]]) -> str:
    return ", ".join(f"{c} {t}" for c, t in cols)


def ddl(db: str, suffix: str = "") -> list[tuple[str, str]]:
    """(object, CREATE ... IF NOT EXISTS statement) in creation order; *suffix*: a
    cluster's local tables (``_shard``: the materialized view fills the local
    ``policy_hits``)."""
    s = suffix
    out = [
        (
            "query_log" + s,
            f"CREATE TABLE IF NOT EXISTS {db}.query_log{s} ({_defs(QUERY_LOG)})"
            " ENGINE = MergeTree PARTITION BY intDiv(toUInt32(ts), 86400) ORDER BY id",
        )
    ]
    for table, (cols, engine) in SUMMING.items():
        out.append(
            (
                table + s,
                f"CREATE TABLE IF NOT EXISTS {db}.{table}{s} ({_defs(cols)}) ENGINE = {engine}",
            )
        )
    out += [
        (
            "policy_hits" + s,
            f"CREATE TABLE IF NOT EXISTS {db}.policy_hits{s} (zone String, trigger String,"
            " action String, node String, hits AggregateFunction(sum, UInt64),"
            " first_hit AggregateFunction(min, Float64),"
            " last_hit AggregateFunction(max, Float64))"
            " ENGINE = AggregatingMergeTree ORDER BY (zone, trigger, action, node)",
        ),
        (
            "policy_hits_in" + s,
            f"CREATE TABLE IF NOT EXISTS {db}.policy_hits_in{s} ({_defs(HITS_IN)}) ENGINE = Null",
        ),
        (
            "policy_hits_mv" + s,
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.policy_hits_mv{s}"
            f" TO {db}.policy_hits{s}"
            " AS SELECT zone, trigger, action, node, arrayReduce('sumState', [hits]) AS hits,"
            " arrayReduce('minState', [first_hit]) AS first_hit,"
            f" arrayReduce('maxState', [last_hit]) AS last_hit FROM {db}.policy_hits_in{s}",
        ),
        (
            "writer_runs" + s,
            f"CREATE TABLE IF NOT EXISTS {db}.writer_runs{s} (node String, run UInt64,"
            " pid UInt32, started Float64, updated Float64, received UInt64,"
            " committed UInt64, failed UInt64, clean UInt8, lost_before UInt64,"
            " version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY (node, run)",
        ),
        (
            "alerts" + s,
            f"CREATE TABLE IF NOT EXISTS {db}.alerts{s} (time Float64, node String, rule String,"
            " severity String, subject String, message String, delivered String,"
            " failed String) ENGINE = MergeTree ORDER BY time",
        ),
    ]
    return out


SHARD = "_shard"  # suffix of a cluster's local tables
READ = ["query_log", *SUMMING, "policy_hits", "writer_runs", "alerts"]  # read by name


def distributed(db: str, cluster: str) -> list[tuple[str, str]]:
    """A cluster's ``Distributed`` tables under the usual names, over the local
    ``_shard`` tables. The writer puts each batch into one shard's local tables itself
    (``QueryLogClickHouse``), so the sharding key here serves nobody's inserts."""
    return [
        (
            t,
            f"CREATE TABLE IF NOT EXISTS {db}.{t} AS {db}.{t}{SHARD}"
            f" ENGINE = Distributed({cluster}, {db}, {t}{SHARD}, rand())",
        )
        for t in READ
    ]


def objects(db: str, cluster: str = "") -> list[tuple[str, str]]:
    """Every object of the schema on one node (with *cluster*: local and Distributed)."""
    return [*ddl(db, SHARD), *distributed(db, cluster)] if cluster else ddl(db)
