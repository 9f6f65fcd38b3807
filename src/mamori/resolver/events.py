"""Bounded queues between the DNS path and whoever drains it (never blocking the DNS path).

The pipeline appends a tuple per answered query to an ``EventQueue`` (or
counts a drop when it is full); a passive DNS sensor gets the upstream answers
through an ``AnswerTap``. The control plane drains both: in the same process
(``workers = 1``) or from a worker process over its channel.

Event tuple layout (positional for speed on the hot path; marshal-able):
  (ts, client, key, rcode, answer, latency_us, upstream, outcome, reason, tcp, hit, group)
*ts*: UNIX time the query arrived; *client*: address text; *key*: the cache
key (lowercased wire qname + qtype + qclass + flags byte); *rcode*: the
answer's rcode, -1 when no answer was sent; *answer*: short text of the answer
data; *latency_us*: microseconds waited for the upstream (0 otherwise);
*upstream*: the upstream that answered ("" otherwise); *outcome*: an
``Outcome`` value (int); *reason*: a short reason code (query.py); *tcp*: bool;
*hit*: None or the policy hit (zone, rule, trigger, action, log line?);
*group*: the client's ``[[group]]`` names, comma-joined ("" for none).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from mamori.resolver.query import Hit

Event = tuple[float, str, bytes, int, str, int, str, int, str, bool, Hit | None, str]
DRAIN_MAX = 50_000
T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """Bounded FIFO; ``dropped`` counts what did not fit. Never blocks the producer."""

    __slots__ = ("dropped", "items", "limit")

    def __init__(self, limit: int) -> None:
        self.items: deque[T] = deque()
        self.limit = limit
        self.dropped = 0

    def put(self, item: T) -> None:
        if len(self.items) < self.limit:
            self.items.append(item)
        else:
            self.dropped += 1

    def drain(self, max_items: int = DRAIN_MAX) -> list[T]:
        """Take up to *max_items* from the front (safe against a concurrent producer)."""
        out: list[T] = []
        pop = self.items.popleft
        try:
            for _ in range(min(len(self.items), max_items)):
                out.append(pop())
        except IndexError:
            pass
        return out


class EventQueue(BoundedQueue[Event]):
    """Query events from the DNS path (the pipeline appends to ``items`` directly)."""

    __slots__ = ()


class AnswerTap(BoundedQueue[tuple[float, bytes]]):
    """Upstream answers offered to passive DNS: (UNIX time, response wire).

    Filled on the slow path (cache misses only) and drained off the DNS loop.
    Holds no client address.
    """

    __slots__ = ()
