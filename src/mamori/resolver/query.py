"""What travels through the pipeline: the per-query value and the typed outcome of an answer.

``Query`` is built once, after the question is parsed, by any path that leaves
the inline fast path (cache hit, memoised block); the stages after that
(resolve, post-check, rewrite, reply) take it as their one argument.

``Outcome`` is what happened to a query, with a reason: the query log, the
hit log, the metrics, the alerts and the console read these fields instead
of parsing answer text.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mamori.policy.model import Match

if TYPE_CHECKING:
    from mamori.resolver.active_policy import PolicySlot

# Policy hit: (zone, rule name, trigger, action, write a BIND-style log line?)
# (policy.model.Match.hit, computed once per rule)
Hit = tuple[str, str, str, str, bool]

# Sends an answer to a client: (wire bytes, client address as the transport gives it)
Reply = Callable[[bytes, Any], None]


class Outcome(enum.IntEnum):
    """What happened to a query. Values are stable: they cross process boundaries.

    Queries over the per-client rate limit and malformed packets that are
    dropped have no event (a flood would fill the queue): they are counted.
    """

    CACHED = 0  # answered from the cache
    RESOLVED = 1  # answered by an upstream (reason: the upstream's name is in its own field)
    STALE = 2  # an expired answer served because the upstreams failed (RFC 8767)
    BLOCKED = 3  # policy replaced the answer (reason: the action; zone and rule in the hit)
    DROPPED = 4  # no answer sent (reason: rpz-drop)
    REFUSED = 5  # REFUSED (reason: acl, meta-query: a transfer or a class other than IN)
    ERROR = 6  # FORMERR, NOTIMP, BADVERS, SERVFAIL (reason says which and why)
    # Not an answer: a zone with policy "disabled" matched (its hit is logged and counted,
    # the query's own answer has its own event). Not a row of the query log.
    LOG_ONLY = 7

    @property
    def label(self) -> str:
        """Lowercase name as stored in the query log: ``cached``, ``blocked`` ..."""
        return self.name.lower()


# Reasons (short, stable, lowercase; stored in the query log's ``reason`` column).
REASON_ACL = "acl"  # client outside [server] allow
REASON_META = "meta-query"  # AXFR/IXFR with nothing published, or a class other than IN
REASON_FORMERR = "formerr"
REASON_NOTIMP = "notimp"  # an opcode other than QUERY (and NOTIFY when transferred zones exist)
REASON_BADVERS = "badvers"  # EDNS version other than 0 (RFC 6891)
REASON_UPSTREAM = "upstream-failed"  # every upstream failed (SERVFAIL, or STALE)
REASON_UPSTREAM_SERVFAIL = "upstream-servfail"  # an upstream answered SERVFAIL
REASON_UPSTREAM_REFUSED = "upstream-refused"  # an upstream answered REFUSED (EDE 22 added)
REASON_RECHECK = "recheck-timer"  # STALE: upstreams failed recently (RFC 8767 section 5)
REASON_DDR = "ddr"  # RESOLVED locally: _dns.resolver.arpa SVCB (RFC 9462, resolver/ddr.py)


class Query:
    """One query on its way through the slow stages.

    *data* is the query as received; *key* the cache key (lowercased wire
    qname + qtype + qclass + one byte DO<<1|CD); *qend* the offset just past
    the question; *opt* the OPT record to append to answers (b"" without
    EDNS); *limit* the largest answer the client takes (bytes); *now* the
    arrival time (UNIX seconds); *found* the pre-check's Client-IP/QNAME
    match, if any; *slot* where the client's policy (the view for its groups)
    is read, on every stage, for as long as the query lasts.
    """

    __slots__ = (
        "addr",
        "cd",
        "data",
        "do",
        "found",
        "ip",
        "key",
        "limit",
        "now",
        "opt",
        "qend",
        "rd",
        "reply",
        "slot",
        "tcp",
    )

    def __init__(
        self,
        data: bytes,
        addr: Any,
        reply: Reply,
        tcp: bool,
        now: float,
        key: bytes,
        qend: int,
        opt: bytes,
        do: int,
        cd: int,
        limit: int,
        slot: PolicySlot,
    ) -> None:
        self.data = data
        self.addr = addr
        self.ip: str = addr[0]
        self.reply = reply
        self.tcp = tcp
        self.now = now
        self.key = key
        self.qend = qend
        self.opt = opt
        self.do = do
        self.cd = cd
        self.limit = limit
        self.rd = data[2] & 1 == 1
        self.found: Match | None = None
        self.slot = slot

    @property
    def qname(self) -> bytes:
        """The question name as lowercased wire bytes."""
        return self.key[:-5]

    @property
    def qtype(self) -> int:
        """The question type (RFC 1035 TYPE value)."""
        return self.key[-5] << 8 | self.key[-4]

    def send(self, resp: bytes | None) -> None:
        """Send *resp* to the client (None: nothing to send)."""
        if resp is not None:
            self.reply(resp, self.addr)
