"""Applying a policy match to a query: the rewritten answer, DROP, TCP-only.

A mixin of ``Pipeline``. A match on the query name (position 0) is answered
from a synthesised entry, memoised like a cache hit; a match further down an
upstream CNAME chain keeps the upstream's CNAMEs up to the matched name and
answers the rest from the policy (slow path, ``FollowCname._follow_chain``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from mamori.dnsutil import wire
from mamori.policy.engine import Policy
from mamori.policy.model import Action, Match
from mamori.resolver.answers import SpecialAnswers
from mamori.resolver.cache import Entry
from mamori.resolver.follow import FollowCname
from mamori.resolver.late import Decision, LatePolicy

MAX_REWRITE_MEMO = 100_000
PENDING = "pending"  # the decision needs NS data that is not cached yet
_NO_ANSWER = (Action.DROP, Action.TCP_ONLY)


class ApplyPolicy(SpecialAnswers, FollowCname, LatePolicy):
    """Mixin of Pipeline (which sets these attributes)."""

    tasks: set[asyncio.Task[None]]
    _rewrites: dict[bytes, tuple[Match, Entry]]
    opt_blocked: tuple[bytes, bytes]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a slow-path coroutine, kept referenced until done (drained at stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    def _rewrites_response(match: Match, tcp: bool) -> bool:
        """Does this match replace the answer (rather than let it through)?"""
        action = match.action
        return not (action is Action.PASSTHRU or (action is Action.TCP_ONLY and tcp))

    def _entry_decision(
        self,
        entry: Entry,
        policy: Policy,
        ip: str,
        key: bytes,
        found: Match | None,
        rd: bool,
        tcp: bool,
        now: float,
        missing_ns_ok: bool = False,
    ) -> Decision | str | None:
        """The decision for a cached answer (memoised on it), or PENDING."""
        limit = found.rule.zone_index if found is not None else policy.nzones
        memo = entry.rewrite
        if memo is not None and memo[0] == policy.version and memo[1] == limit:
            override = memo[2]
        else:
            result = self._decide(policy, key, entry, found, rd, missing_ns_ok)
            if isinstance(result, bytes):
                return PENDING
            decision, disabled = result
            override = self._record(
                entry, policy, found, decision, disabled, ip, key, tcp, now, not missing_ns_ok
            )
        if override is not None:
            return override
        return (found, 0) if found is not None else None

    async def _decide_entry_async(
        self,
        entry: Entry,
        policy: Policy,
        ip: str,
        key: bytes,
        found: Match | None,
        rd: bool,
        tcp: bool,
        now: float,
    ) -> Decision | None:
        decision = self._entry_decision(entry, policy, ip, key, found, rd, tcp, now)
        if decision != PENDING:
            return decision  # type: ignore[return-value]
        result, disabled = await self._decide_async(policy, key, entry, found, rd)
        self._record(entry, policy, found, result, disabled, ip, key, tcp, now, True)
        return result

    def _record(
        self,
        entry: Entry,
        policy: Policy,
        found: Match | None,
        decision: Decision | None,
        disabled: list[Match],
        ip: str,
        key: bytes,
        tcp: bool,
        now: float,
        memo: bool,
    ) -> Decision | None:
        """Log the disabled zones' matches; memoise (and return) what overrides *found*.

        Only the override is memoised on the entry: *found* itself may depend on
        the client (Client-IP rules).
        """
        for m in disabled:  # "disabled" zones: log what they would have done
            self._event(now, ip, key, -1, "", 0, tcp, m.hit)
        override = decision if decision is not None and decision[0] is not found else None
        if memo:
            limit = found.rule.zone_index if found is not None else policy.nzones
            entry.rewrite = (policy.version, limit, override)
        return override

    def _apply_decision(
        self,
        decision: Decision,
        entry: Entry,
        data: bytes,
        qend: int,
        opt: bytes,
        do: int,
        limit: int,
        key: bytes,
        ip: str,
        now: float,
        tcp: bool,
        addr: Any,
        reply: Any,
    ) -> bytes | None:
        """A rewriting decision on a resolved answer; None = nothing to send now."""
        match, pos = decision
        if pos == 0:
            return self._apply_match(
                match, data, qend, opt, do, limit, key, ip, now, tcp, addr, reply, memo=False
            )
        if match.action in _NO_ANSWER and (match.action is Action.DROP or not tcp):
            return self._drop_or_truncate(match, data, qend, opt, key, ip, now, tcp)
        self.stats.rewrites += 1
        self._spawn(
            self._follow_chain(
                match, pos, entry, key, data, addr, reply, qend, do, limit, ip, now, tcp
            )
        )
        return None

    def _drop_or_truncate(
        self,
        match: Match,
        data: bytes,
        qend: int,
        opt: bytes,
        key: bytes,
        ip: str,
        now: float,
        tcp: bool,
    ) -> bytes | None:
        """DROP: no answer at all; TCP-only over UDP: an empty answer with TC=1."""
        if match.action is Action.DROP:
            self._event(now, ip, key, -1, "rpz drop", 0, tcp, match.hit)
            return None
        self._event(now, ip, key, wire.NOERROR, "rpz tcp-only", 0, tcp, match.hit)
        return wire.error_response(data, wire.NOERROR, qend, opt, tc=True)

    def _apply_match(
        self,
        match: Match,
        data: bytes,
        qend: int,
        opt: bytes,
        do: int,
        limit: int,
        key: bytes,
        ip: str,
        now: float,
        tcp: bool,
        addr: Any = None,
        reply: Any = None,
        memo: bool = True,
    ) -> bytes | None:
        """The answer of a rewriting match on the query name; None = nothing to send now.

        *memo*: remember the rewrite by name (a QNAME match that no other
        trigger can override; not a decision that depended on the answer).
        Callers serve the normal answer themselves for PASSTHRU (and TCP-only
        over TCP): see ``_rewrites_response``.
        """
        if match.action in _NO_ANSWER and (match.action is Action.DROP or not tcp):
            return self._drop_or_truncate(match, data, qend, opt, key, ip, now, tcp)
        # NXDOMAIN, NODATA, Local-Data: a synthesised answer, memoised as wire bytes;
        # a CNAME rewrite is followed asynchronously (answered through *reply*).
        assert self.answers is not None and self.policy is not None
        self.stats.rewrites += 1
        target = self.answers.cname_target(match, key)
        if target is not None and key[-5:-3] != b"\x00\x05" and reply is not None:
            self._spawn(
                self._follow(match, target, key, data, addr, reply, qend, do, limit, ip, now, tcp)
            )
            return None
        entry = self.answers.get(match, key, now)
        if memo and self.policy.by_name_only:  # QNAME rewrites depend on the name only
            if len(self._rewrites) >= MAX_REWRITE_MEMO:
                self._rewrites.clear()
            self._rewrites[key] = (match, entry)
        if opt:
            opt = self.opt_blocked[do]  # EDE 15 Blocked (RFC 8914)
        age = int(now - entry.born)
        body = entry.rendered if age == entry.rendered_age else entry.render(age)
        counts = entry.counts_edns if opt else entry.counts
        resp = data[:2] + entry.flags[data[2] & 1] + counts + data[12:qend] + body + opt
        if len(resp) > limit:
            resp = self._fit(entry, data, qend, body, opt, limit)
        self._event(now, ip, key, entry.rcode, entry.summary, 0, tcp, match.hit)
        return resp
