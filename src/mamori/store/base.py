"""Protocols at the storage seam; the resolver depends only on these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


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
