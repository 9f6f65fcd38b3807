"""Protocols at the storage seam; the resolver depends only on these."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


class QueryRow(NamedTuple):
    """One answered query as stored in the query log."""

    ts: float  # UNIX time the query arrived
    client: str  # client IP address
    qname: str  # presentation form, lowercase, with trailing dot
    qtype: int
    rcode: int  # -1: no answer sent (policy DROP)
    answer: str  # short answer summary ("A 192.0.2.1;A 192.0.2.2")
    latency_us: int  # time spent waiting for resolution; 0 for cache hits
    upstream: str  # upstream that answered, "" for cache hits and local answers
    cache_hit: bool  # outcome == "cached" (kept for older readers)
    transport: str  # "udp" or "tcp"
    policy_zone: str  # RPZ zone that rewrote the answer ("" when none)
    policy_rule: str  # matched rule as BIND names it: owner.zone
    policy_trigger: str  # QNAME, CLIENT-IP, ...
    policy_action: str  # NXDOMAIN, NODATA, Local-Data, DROP, TCP-ONLY, PASSTHRU, disabled
    # what happened (resolver.query.Outcome, lowercase): cached, resolved, stale, blocked,
    # dropped, refused, error
    outcome: str
    reason: str  # why, for outcomes that have one: the action, "acl", "upstream-failed" ...
    client_group: str  # the client's [[group]] names, comma-joined ("" when none)
    # the device's name when the client named itself (DoH path, DoT/DoQ server name, EDNS
    # client MAC as aa:bb:cc:dd:ee:ff); "" for a client known by its address only
    device: str


# Policy hit counter: (zone, trigger, action, hits, first hit, last hit UNIX time)
HitCount = tuple[str, str, str, int, float, float]

QueryRowTuple = tuple[
    float, str, str, int, int, str, int, str, bool, str, str, str, str, str, str, str, str, str
]


@dataclass(frozen=True)
class WriterMark:
    """The query-log writer's counts (events, since its run started) as of a commit.

    ``run``: its ``writer_runs`` row; ``received``: events taken from the queues or
    waiting in them; ``committed``: events whose rows are committed (this batch
    included); ``failed``: events in batches the store refused.
    """

    run: int
    received: int
    committed: int
    failed: int


@dataclass(frozen=True)
class WriterRun:
    """A ``writer_runs`` row; ``lost`` is what it received and neither committed nor
    counted as failed (0 after a clean stop; a lower bound after a crash)."""

    run: int
    pid: int
    started: float
    updated: float
    received: int
    committed: int
    failed: int
    clean: bool

    @property
    def lost(self) -> int:
        return (
            0 if self.clean else max(self.received - self.committed - self.failed, 0)
        )  # policy replaced the answer, or sent none


class QueryLogStore(Protocol):
    def write_queries(
        self,
        rows: Sequence[QueryRowTuple],
        mark: WriterMark | None = None,
        hits: Sequence[HitCount] = (),
    ) -> None:
        """Append rows (QueryRow or plain tuples in the same field order) in one transaction,
        with the writer's *mark* (its counts as of this commit) and the batch's policy-hit
        counts (*hits*, added as ``add_policy_hits`` does) in the same transaction."""

    def begin_run(
        self, pid: int, noted: tuple[int, int] | None = None
    ) -> tuple[int, WriterRun | None]:
        """Record a writer run's start; (its id, the previous run or None). *noted*: the
        previous run's (run, received) noted after its last commit (store/runs.py)."""

    def end_run(self, mark: WriterMark) -> None:
        """The run stopped cleanly (its final drain committed)."""

    def add_policy_hits(self, counts: Sequence[HitCount]) -> None:
        """Add to the per-zone hit counters (kept whatever the query log retention)."""

    def policy_hits(self) -> list[HitCount]:
        """All hit counters, by zone."""

    def prune_queries(self, before: float, groups: Mapping[str, float | None] | None = None) -> int:
        """Delete rows older than *before* (UNIX time); return how many.

        *groups*: a group's own cutoff (None: forever) for the rows of its
        clients; a row of clients in several groups goes by the longest.
        """

    def close(self) -> None: ...


# A query-log row as the readers give it, in QUERY_COLUMNS order: id (int, ordered by
# arrival on one node), ts (UNIX time), client, qname, qtype, rcode, answer, cache_hit,
# upstream, policy_zone, policy_rule, policy_action, outcome, reason, client_group,
# device, node
QUERY_COLUMNS = ("id", "ts", "client", "qname", "qtype", "rcode", "answer", "cache_hit",
                 "upstream", "policy_zone", "policy_rule", "policy_action", "outcome",
                 "reason", "client_group", "device", "node")  # fmt: skip
BLOCKED_OUTCOMES = ("blocked", "dropped")  # policy replaced the answer, or sent none


@dataclass(frozen=True)
class QueryFilter:
    """Which query-log rows a reader returns (every field: "" / None = any).

    *name*: a substring of the query name (case-insensitive); *action*: "blocked" (a
    policy zone blocked or dropped it), "allowed" (not so), or a policy action
    (NXDOMAIN ...); *zone*: the policy zone (with or without its final dot); *since*,
    *until*: UNIX times, [since, until); *device*: a device name (exact, lowercase);
    *node*: the ``[server] node_name`` that logged it (exact)."""

    client: str = ""
    name: str = ""
    action: str = ""
    zone: str = ""
    since: float | None = None
    until: float | None = None
    device: str = ""
    node: str = ""


# (hour start UNIX time, queries, blocked)
HourCount = tuple[int, int, int]


class QueryLogReader(Protocol):
    """Reads of the query log, its per-hour aggregates, policy hits and alerts, as the
    console, the APIs, the geo page, the feed preview and the brand watch need them.
    Times are UNIX seconds (float), hours are UNIX times of an hour's start (int).
    A *node* argument "" means every node. A store with no data answers empty.
    Raises StoreError when the store cannot be read."""

    # ---- console overview (from the per-hour aggregates; never a full scan)
    def hourly(self, start: int, node: str = "") -> dict[int, tuple[int, int]]:
        """hour -> (queries, blocked) of the hours >= *start*."""

    def blocks_by_zone(self, start: int, node: str = "") -> list[tuple[int, str, int]]:
        """(hour, policy zone, blocks) of the hours >= *start*."""

    def top_blocked_names(
        self, start: int, node: str = "", limit: int = 10
    ) -> list[tuple[str, str, int]]:
        """(qname, a zone that blocked it, blocks), most blocked first, then by name."""

    def top_blocked_clients(
        self, start: int, node: str = "", limit: int = 10
    ) -> list[tuple[str, int]]:
        """(client, blocks), most blocked first, then by client."""

    def top_queried(
        self, since: float, scan: int, node: str = "", limit: int = 10
    ) -> list[tuple[str, int]]:
        """(qname, queries) among the newest *scan* rows at or after *since*, most first."""

    def infected(
        self, zones: Sequence[str], since: float, node: str = "", limit: int = 50
    ) -> list[tuple[str, int, float, str]]:
        """(client, blocks, last block time, "name1,name2") of the clients blocked by
        *zones* since *since*, latest first."""

    def nodes(self) -> list[str]:
        """The node names seen in the query log, sorted."""

    # ---- the query log pages
    def queries(
        self, f: QueryFilter, before_id: int | None = None, limit: int = 50
    ) -> list[tuple[Any, ...]]:
        """Rows (QUERY_COLUMNS) matching *f* with id < *before_id*, newest first."""

    def queries_after(
        self, f: QueryFilter, after_id: int, limit: int = 200
    ) -> list[tuple[Any, ...]]:
        """Rows matching *f* with id > *after_id*, oldest first (the live view)."""

    def last_id(self) -> int:
        """The newest row's id the live view starts after (0: none yet)."""

    def queries_csv(self, f: QueryFilter, limit: int = 100_000) -> Iterator[tuple[Any, ...]]:
        """Like ``queries`` (streamed), for the CSV export."""

    def policy_hits(self, node: str = "") -> list[HitCount]:
        """The hit counters (zone, trigger, action, hits, first, last), by zone."""

    def alerts(self, limit: int = 200, node: str = "") -> list[tuple[Any, ...]]:
        """(time, rule, severity, subject, message, delivered, failed, node), newest first:
        this node's alert history (SQLite: node ""), or every node's (ClickHouse: the
        ``[server] node_name`` that raised it); *node*: only that node's."""

    # ---- geo page, feed preview, brand watch (time range reads)
    def blocks_by_bucket(self, since: float, bucket: int) -> list[tuple[int, str, int]]:
        """(bucket start, qname, blocks) of blocked queries since *since*, grouped by
        *bucket* seconds (3600 or 86400, UTC)."""

    def count(self, since: float, until: float) -> int:
        """Queries in [since, until)."""

    def distinct_clients(self, since: float, until: float) -> int:
        """Distinct clients in [since, until)."""

    def names(self, since: float, until: float) -> set[str]:
        """The distinct query names in [since, until)."""

    def answers(self, since: float, until: float, cname_only: bool = False) -> set[str]:
        """The distinct answers holding a CNAME or an A/AAAA record (*cname_only*: a CNAME)."""

    def clients(self, since: float, until: float) -> list[str]:
        """The distinct clients in [since, until)."""

    def grouped(
        self,
        since: float,
        until: float,
        names: Iterable[str],
        answers: Iterable[str],
        clients: Iterable[str],
    ) -> Iterator[tuple[str, str, int, str, str, int]]:
        """(qname, client, qtype, client_group, answer, queries) of the rows in [since,
        until) whose name, answer or client is one of those given, grouped by them."""

    def name_clients(self, since: float) -> Iterator[tuple[str, str, float, float]]:
        """(qname, client, first ask, last ask) per pair asked at or after *since*."""

    def close(self) -> None: ...
