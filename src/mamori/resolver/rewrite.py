"""The rewrite stage: a policy match turned into the answer the client gets.

A match on the query name (position 0) is answered from a synthesised entry
(``policy_answers.py``), memoised by name like a cache hit when the policy
decides by name only; a match further down an upstream CNAME chain keeps the
upstream's CNAMEs up to the matched name and answers the rest from the policy
(``follow.py``). DROP sends nothing; TCP-only answers TC=1 over UDP (RFC 5452
style nudge to TCP) and lets the query through over TCP; PASSTHRU lets it
through. Every rewritten answer carries EDE 15 Blocked (RFC 8914) when the
client speaks EDNS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from mamori.dnsutil import wire
from mamori.policy.model import Action, Match
from mamori.resolver.cache import Entry
from mamori.resolver.follow import CnameFollower
from mamori.resolver.postcheck import Decision
from mamori.resolver.query import Outcome, Query
from mamori.resolver.reply import Replies

MAX_REWRITE_MEMO = 100_000
_NO_ANSWER = (Action.DROP, Action.TCP_ONLY)
REASON_OF = {a: a.value.lower() for a in Action}  # the outcome reason of a rewrite: its action

Spawn = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]


def replaces_answer(match: Match, tcp: bool) -> bool:
    """Does *match* replace the answer (rather than let the upstream's through)?"""
    action = match.action
    return not (action is Action.PASSTHRU or (action is Action.TCP_ONLY and tcp))


class Rewrite:
    """Applies matches; answers now (bytes), later (through ``q.reply``), or never (DROP)."""

    def __init__(self, replies: Replies, follower: CnameFollower, spawn: Spawn) -> None:
        self.replies = replies
        self.stats = replies.stats
        self.follower = follower
        self.spawn = spawn

    def qname_match(self, q: Query, match: Match, memo: bool = True) -> bytes | None:
        """The answer of a rewriting match on the query name; None = nothing to send now.

        *memo*: remember the rewrite by name (a QNAME match no other trigger can
        override; not a decision that depended on the answer). Callers serve the
        normal answer themselves when ``replaces_answer`` is False.
        """
        if match.action in _NO_ANSWER and (match.action is Action.DROP or not q.tcp):
            return self.drop_or_truncate(q, match)
        active = q.slot.active  # the client's view of the policy
        assert active is not None
        self.stats.rewrites += 1
        key = q.key
        target = active.answers.cname_target(match, key)
        if target is not None and key[-5:-3] != b"\x00\x05":
            # A policy CNAME: the CNAME, then its target's own answer (answered later).
            self.spawn(self.follower.follow(q, match, target))
            return None
        entry = active.answers.get(match, key, q.now)
        if memo and active.policy.by_name_only:  # QNAME rewrites depend on the name only
            if len(active.rewrites) >= MAX_REWRITE_MEMO:
                active.rewrites.clear()
            active.rewrites[key] = (match, entry)
        return self.synthesised(q, match, entry)

    def synthesised(self, q: Query, match: Match, entry: Entry) -> bytes:
        """A synthesised policy entry as the answer to *q*, with its event."""
        opt = self.replies.opt_blocked[q.do] if q.opt else b""
        age = int(q.now - entry.born)
        body = entry.rendered if age == entry.rendered_age else entry.render(age)
        resp = self.replies.assemble(q, entry, body, opt)
        self.replies.event(
            q, entry.rcode, entry.summary, Outcome.BLOCKED, REASON_OF[match.action], match.hit
        )
        return resp

    def decision(self, q: Query, decision: Decision, entry: Entry) -> bytes | None:
        """A rewriting decision made on a resolved answer; None = nothing to send now."""
        match, pos = decision
        if pos == 0:
            return self.qname_match(q, match, memo=False)
        if match.action in _NO_ANSWER and (match.action is Action.DROP or not q.tcp):
            return self.drop_or_truncate(q, match)
        self.stats.rewrites += 1
        self.spawn(self.follower.follow_chain(q, match, pos, entry))
        return None

    def drop_or_truncate(self, q: Query, match: Match) -> bytes | None:
        """DROP: no answer at all; TCP-only over UDP: an empty answer with TC=1."""
        if match.action is Action.DROP:
            self.stats.policy_drops += 1
            self.replies.event(q, -1, "", Outcome.DROPPED, "rpz-drop", match.hit)
            return None
        self.replies.event(q, wire.NOERROR, "", Outcome.BLOCKED, "tcp-only", match.hit)
        return wire.error_response(q.data, wire.NOERROR, q.qend, q.opt, tc=True)
