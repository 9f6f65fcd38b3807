"""The passive DNS schema in ClickHouse, in SQL that Debian's 18.16 and current releases run.

Tuples are aggregated by the engine: ``AggregatingMergeTree`` tables hold states of
min(time_first), max(time_last) and sum(count); reads merge them (``minMerge`` ...
``GROUP BY``), so every answer is exact before and after background merges.

Writes go into ``Null`` tables; a materialized view turns each row into states
(``arrayReduce('minState', [x])``: row by row, no GROUP BY, so one INSERT block is one
part of the target: all or nothing) and stores them. The tuples of a batch go, as
given (rrname, rrtype, rdata, bailiwick, first, last, count), into ``pdns_rrset_src``
and ``pdns_rdata_src``: the views derive the keys below in SQL (the writer only
transposes the batch: deriving them in Python limited ingest):

* ``pdns_rrset``: by owner, ``ORDER BY (rname, ...)`` with ``rname`` the labels reversed
  (``com.example.www.``): exact names and ``*.example.com`` are prefix ranges;
* ``pdns_rdata``: the pivot table, ``ORDER BY (pkey, ...)``: ``pkey`` is 0x01 + the
  address as 16 bytes (IPv4 mapped) for A/AAAA, 0x02 + the reversed name inside
  CNAME/NS/PTR/DNAME/MX/SRV rdata: an address, a CIDR network, a range, a name or
  ``*.example.com`` in the rdata are key ranges;
* ``pdns_names``: distinct names and their U-label form, for keyword search (an
  n-gram bloom filter skip index on servers that have them: 19.x on; 18.16 scans);
* ``pdns_nxdomain``, ``pdns_sensors``: aggregated the same way;
* ``pdns_ingest`` (capture progress) and ``pdns_tap_runs`` (the tap's crash accounting):
  ``ReplacingMergeTree``, read by their latest version. Tap runs are per sensor (a
  fleet's nodes share the table): ``ORDER BY (sensor, run)``; a table created before
  had no ``sensor`` and is ``ORDER BY run``: the column is added (``RUNS_SENSOR``) and
  run ids are unique across sensors (``pdns_clickhouse.run_base``), so rows of two
  sensors are never merged as one run.

Batches are written exactly once: every insert into an aggregating table carries a
marker row whose key is 0x00 + the batch id, in the same block (the same part); a
batch whose marker is present is not inserted again (a reply lost after the INSERT
succeeded, a ClickHouse killed mid-batch).
"""

from __future__ import annotations

MODERN = (20, 1)  # LowCardinality, data skipping indexes, column codecs: not in 18.16
STRICT_IP = (22, 3)  # IPv4/IPv6StringToNum raise on text that is no address (OrDefault)

AGG = {
    "first": "AggregateFunction(min, UInt32)",
    "last": "AggregateFunction(max, UInt32)",
    "sum": "AggregateFunction(sum, UInt64)",
}

# table -> (plain input columns, aggregated columns, ORDER BY)
AGGREGATING: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str, str]], str]] = {
    "pdns_rrset": (
        [("rname", "String"), ("rrtype", "UInt16"), ("rdata", "String"), ("bailiwick", "{lc}")],
        [("time_first", "first", "UInt32"), ("time_last", "last", "UInt32"),
         ("count", "sum", "UInt64")],
        "rname, rrtype, rdata, bailiwick",
    ),
    "pdns_rdata": (
        [("pkey", "String"), ("rrtype", "UInt16"), ("rname", "String"), ("rdata", "String"),
         ("bailiwick", "{lc}")],
        [("time_first", "first", "UInt32"), ("time_last", "last", "UInt32"),
         ("count", "sum", "UInt64")],
        "pkey, rrtype, rname, rdata, bailiwick",
    ),
    "pdns_nxdomain": (
        [("rrname", "String"), ("rrtype", "UInt16")],
        [("time_first", "first", "UInt32"), ("time_last", "last", "UInt32"),
         ("count", "sum", "UInt64")],
        "rrname, rrtype",
    ),
    "pdns_sensors": (
        [("sensor", "String")],
        [("observations", "sum", "UInt64"), ("last_seen", "last", "UInt32")],
        "sensor",
    ),
}  # fmt: skip
_STATE = {"first": "minState", "last": "maxState", "sum": "sumState"}
# Column codecs (servers >= MODERN; CODEC came in 19.x): by stored type. Names, rdata,
# keys and the aggregate states (which take only generic codecs: Delta and T64 need a
# fixed-size type) compress best with ZSTD; the record type too (T64 before ZSTD made
# it 3x larger: measured). Sizes in docs/performance.md.
_CODEC = {
    "String": "ZSTD(3)",
    "UInt16": "ZSTD(1)",
    "AggregateFunction": "ZSTD(3)",
}
MARKER = "\x00"  # first byte of a batch marker's key (no name, address or sensor has it)

_PLAIN = {
    "pdns_names": (
        "rrname String{zstd}, uname String{zstd}{index}",
        "ReplacingMergeTree ORDER BY rrname SETTINGS index_granularity = 1024",
    ),
    "pdns_ingest": (
        "file String, path String, size UInt64, messages UInt64, complete UInt8, updated UInt32",
        "ReplacingMergeTree(messages) ORDER BY file",
    ),
    "pdns_tap_runs": (
        "sensor String, run UInt64, pid UInt32, started Float64, updated Float64,"
        " received UInt64, committed UInt64, failed UInt64, clean UInt8, lost_before UInt64,"
        " version UInt64",
        "ReplacingMergeTree(version) ORDER BY (sensor, run)",
    ),
}
# a pdns_tap_runs table of a store created before runs were per sensor: the column added
RUNS_SENSOR = "ALTER TABLE {table} ADD COLUMN sensor String DEFAULT ''"
_KEYWORD_INDEX = (
    ", INDEX kw_name rrname TYPE ngrambf_v1(3, 8192, 2, 0) GRANULARITY 1"
    ", INDEX kw_uname uname TYPE ngrambf_v1(3, 4096, 2, 0) GRANULARITY 1"
)

TABLES = [*AGGREGATING, *_PLAIN]
# the tables whose input is a batch's tuples as given (``_src``), keys derived in SQL
FROM_TUPLES = ("pdns_rrset", "pdns_rdata")
TUPLE_COLUMNS = ["rrname", "rrtype", "rdata", "bailiwick", "time_first", "time_last", "count"]
# a batch marker row: rrname = MARKER + batch id, kept as the key of both tables
_IS_MARK = "substring(rrname, 1, 1) = '\\0'"
# pdns_keys.reverse_name in SQL: labels reversed, empty ones dropped, final dot
_REV = "concat(arrayStringConcat(arrayReverse(arrayFilter(x -> x != '', splitByChar('.', {0}))), '.'), '.')"  # noqa: E501
# pdns_keys.ip_key: glibc inet_pton's IPv4 syntax is four decimal octets without
# leading zeros, i.e. exactly the text IPv4NumToString gives back (checked that way:
# cheaper than a regular expression), IPv4-mapped
# pdns_keys.rdata_name: the name at the type's position among the rdata fields
_NAME_AT = (
    "lowerUTF8(arrayElement(extractAll(rdata, '[^ \\\\t\\\\n\\\\r]+'),"
    " transform(rrtype, [5, 2, 12, 39, 15, 33], [1, 1, 1, 1, 2, 4], 0)))"
)


def _pkey(strict: bool) -> str:
    """pdns_rdata.pkey in SQL (``pdns_clickhouse._pkey`` in Python): 0x01 + 16 address
    bytes for A/AAAA, 0x02 + the reversed name in CNAME/NS/PTR/DNAME/MX/SRV rdata, ''
    for no pivot row (not an address, no name at the type's position); for a marker row
    its own key. Servers from 22.x raise on text that is not an address: ``OrDefault``."""
    v6 = "IPv6StringToNumOrDefault(rdata)" if strict else "IPv6StringToNum(rdata)"
    v4 = "IPv4StringToNumOrDefault(rdata)" if strict else "IPv4StringToNum(rdata)"
    v4_ok = f"IPv4NumToString({v4}) = rdata"
    v6_ok = f"({v6} != toFixedString('', 16) OR match(rdata, '^[0:]+$'))"
    return (
        f"multiIf({_IS_MARK}, rrname,"
        f" rrtype IN (1, 28) AND position(rdata, ':') > 0,"
        f" if({v6_ok}, concat('\\x01', {v6}), ''),"
        f" rrtype IN (1, 28), if({v4_ok}, concat('\\x01', IPv4ToIPv6({v4})), ''),"
        f" ({_NAME_AT} AS nm) != '', concat('\\x02', {_REV.format('nm')}), '')"
    )


def modern(version: tuple[int, ...]) -> bool:
    return version >= MODERN


def codec(column_type: str, new: bool) -> str:
    """The `` CODEC(...)`` clause of a stored column of *column_type* ('' on servers
    before MODERN, which have no column codecs, and for types without one).
    ``LowCardinality(String)`` takes ZSTD over its dictionary and indexes."""
    if not new:
        return ""
    base = column_type.split("(", 1)[0]
    if base == "LowCardinality":
        base = "String"
    found = _CODEC.get(base)
    return f" CODEC({found})" if found else ""


def ddl(db: str, version: tuple[int, ...], suffix: str = "") -> list[tuple[str, str]]:
    """(table, CREATE ... IF NOT EXISTS statement) for every object, in creation order.
    *suffix*: ``_shard`` for the local tables of a cluster (``distributed`` adds the
    tables over them)."""
    new = modern(version)
    lc = "LowCardinality(String)" if new else "String"
    out: list[tuple[str, str]] = []
    for table, (plain, agg, order) in AGGREGATING.items():
        cols = [(c, t.format(lc=lc)) for c, t in plain]
        defs = ", ".join(f"{c} {t}{codec(t, new)}" for c, t in cols)
        stored = ", ".join(f"{c} {AGG[kind]}{codec(AGG[kind], new)}" for c, kind, _t in agg)
        granule = 1024 if table in ("pdns_rrset", "pdns_rdata") else 8192
        out.append(
            (
                table + suffix,
                (
                    f"CREATE TABLE IF NOT EXISTS {db}.{table}{suffix} ({defs}, {stored})"
                    f" ENGINE = AggregatingMergeTree ORDER BY ({order})"
                    f" SETTINGS index_granularity = {granule}"
                ),
            )
        )
        states = ", ".join(f"arrayReduce('{_STATE[k]}', [{c}]) AS {c}" for c, k, _t in agg)
        if table in FROM_TUPLES:
            out += _from_tuples(db, table, suffix, lc, states, version >= STRICT_IP)
            continue
        inputs = (
            ", ".join(f"{c} {t}" for c, t in cols)
            + ", "
            + ", ".join(f"{c} {t}" for c, _k, t in agg)
        )
        out.append(
            (
                f"{table}_in{suffix}",
                f"CREATE TABLE IF NOT EXISTS {db}.{table}_in{suffix} ({inputs}) ENGINE = Null",
            )
        )
        keys = ", ".join(c for c, _t in cols)
        out.append(
            (
                f"{table}_mv{suffix}",
                (
                    f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_mv{suffix}"
                    f" TO {db}.{table}{suffix}"
                    f" AS SELECT {keys}, {states} FROM {db}.{table}_in{suffix}"
                ),
            )
        )
    for table, (spec, engine) in _PLAIN.items():
        body = spec.format(index=_KEYWORD_INDEX if new else "", zstd=codec("String", new))
        out.append(
            (
                table + suffix,
                f"CREATE TABLE IF NOT EXISTS {db}.{table}{suffix} ({body}) ENGINE = {engine}",
            )
        )
    return out


def _from_tuples(
    db: str, table: str, suffix: str, lc: str, states: str, strict: bool
) -> list[tuple[str, str]]:
    """The ``_src`` input table of *table* (a batch's tuples as given) and the view that
    derives its keys: ``rname`` (and ``pkey`` for ``pdns_rdata``, whose view keeps only
    the tuples that have one). Replaces the ``_in`` tables of earlier releases (left in
    place, unused, in stores created by them)."""
    src = f"{db}.{table}_src{suffix}"
    inputs = (
        f"rrname String, rrtype UInt16, rdata String, bailiwick {lc},"
        " time_first UInt32, time_last UInt32, count UInt64"
    )
    rname = f"if({_IS_MARK}, rrname, {_REV.format('rrname')}) AS rname"
    if table == "pdns_rrset":
        select = f"SELECT {rname}, rrtype, rdata, bailiwick, {states} FROM {src}"
    else:
        rname = f"if({_IS_MARK}, '', {_REV.format('rrname')}) AS rname"
        select = (
            f"SELECT {_pkey(strict)} AS pkey, rrtype, {rname}, rdata, bailiwick, {states}"
            f" FROM {src} WHERE pkey != ''"
        )
    return [
        (f"{table}_src{suffix}", f"CREATE TABLE IF NOT EXISTS {src} ({inputs}) ENGINE = Null"),
        (
            f"{table}_srcmv{suffix}",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_srcmv{suffix}"
            f" TO {db}.{table}{suffix} AS {select}",
        ),
    ]


def distributed(db: str, cluster: str) -> list[tuple[str, str]]:
    """A cluster's ``Distributed`` tables (read by every lookup) over the ``_shard`` tables.
    The store writes each shard's rows into that shard's own tables itself (exactly once
    per shard, see ``PdnsClickHouse``), so the sharding key here is only for others."""
    return [
        (
            t,
            f"CREATE TABLE IF NOT EXISTS {db}.{t} AS {db}.{t}_shard"
            f" ENGINE = Distributed({cluster}, {db}, {t}_shard, rand())",
        )
        for t in TABLES
    ]


def columns(table: str) -> list[str]:
    """The input columns of an aggregating table (its ``_in`` table), in order."""
    plain, agg, _order = AGGREGATING[table]
    return [c for c, _t in plain] + [c for c, _k, _t in agg]


def missing_features(version: tuple[int, ...]) -> list[str]:
    """What this server lacks that the schema uses on current releases."""
    if modern(version):
        return []
    return [
        "column codecs (ZSTD per column: the server's <compression> method for all)",
        "LowCardinality columns (bailiwick: plain String)",
        "data skipping indexes (keyword search scans pdns_names)",
        "table TTL (retention by `mamori pdns compact` / [pdns] retention_days only)",
        "SimpleAggregateFunction (AggregateFunction states are used everywhere)",
    ]
