"""The policy in force in one data plane, and what is memoised for it.

Every stage reads the policy through one ``PolicySlot``; a swap replaces the
slot's ``ActivePolicy`` whole (policy, synthesised answers, rewrite memo), so
nothing memoised for an older version survives it.
"""

from __future__ import annotations

from mamori.policy.engine import Policy
from mamori.policy.model import Match
from mamori.resolver.cache import Entry
from mamori.resolver.policy_answers import PolicyAnswers


class ActivePolicy:
    """The policy in force and what is memoised for it; replaced whole on every swap."""

    __slots__ = ("answers", "policy", "rewrites")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.answers = PolicyAnswers(policy)
        # cache key -> (match, synthesised entry): QNAME rewrites of by-name-only policies
        self.rewrites: dict[bytes, tuple[Match, Entry]] = {}


class PolicySlot:
    """Where every stage reads the policy in force (``active`` is None: no policy)."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: ActivePolicy | None = None
