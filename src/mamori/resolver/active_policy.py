"""The policy in force in one data plane, and what is memoised for it.

Every stage reads the policy through a ``PolicySlot``; a swap replaces the
slot's ``ActivePolicy`` whole (policy, synthesised answers, rewrite memo), so
nothing memoised for an older version survives it.

Client groups: each distinct set of groups a client is in has its own slot,
holding the *view* of the policy for that set (``Policy.view``: the zones that
apply to it). The client's record (acl.py) keeps its slot, so the query path
reads the right view with no more lookups than without groups; without
``[[group]]`` every client shares the one slot of the whole policy.
"""

from __future__ import annotations

from mamori.policy.engine import Policy
from mamori.policy.groups import group_label
from mamori.policy.model import Match
from mamori.resolver.cache import Entry
from mamori.resolver.policy_answers import PolicyAnswers


class ActivePolicy:
    """The policy in force and what is memoised for it; replaced whole on every swap."""

    __slots__ = ("answers", "clear", "policy", "rewrites", "version")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.version = policy.version  # what memos carry (a view's own, see Policy.view)
        # a cache entry memoised with this version has no rule in any zone of the whole
        # policy (so none in this view either): the whole policy's version
        self.clear = policy.base.version
        self.answers = PolicyAnswers(policy)
        # cache key -> (match, synthesised entry): QNAME rewrites of by-name-only policies
        self.rewrites: dict[bytes, tuple[Match, Entry]] = {}


MAX_DEVICE_SLOTS = 10_000  # named devices with their own slot (query log name) per data plane


class PolicySlot:
    """Where every stage reads the policy in force (``active`` is None: no policy).

    *groups*: the client groups this slot serves (() for clients in none);
    *device*: the device name of a client named over encrypted DNS ("" otherwise);
    *label*: both as the query log gets them (``groups.split_label``).
    """

    __slots__ = ("active", "device", "groups", "label")

    def __init__(self, groups: tuple[str, ...] = (), device: str = "") -> None:
        self.active: ActivePolicy | None = None
        self.groups = groups
        self.device = device
        self.label = group_label(groups, device)


class PolicySlots:
    """The slot of every set of client groups seen, each with its view of the policy.

    Slots are made on first use (``slot``); ``set_policy`` gives every slot the
    view of the new version (views with the same zones share one ``ActivePolicy``).
    """

    def __init__(self) -> None:
        self.default = PolicySlot()  # clients in no group (and every client without groups)
        self.slots: dict[tuple[str, ...], PolicySlot] = {(): self.default}
        # named devices: (groups, device) -> slot; bounded (names come from clients)
        self.devices: dict[tuple[tuple[str, ...], str], PolicySlot] = {}
        self.policy: Policy | None = None

    def slot(self, groups: tuple[str, ...], device: str = "") -> PolicySlot:
        """The slot of clients in exactly *groups* (made, with its view, on first use);
        with *device*, that device's own slot (the same view, its name in the log).
        Past MAX_DEVICE_SLOTS named devices, new ones share the slot of their groups."""
        if device:
            dslot = self.devices.get((groups, device))
            if dslot is not None:
                return dslot
            if len(self.devices) < MAX_DEVICE_SLOTS:
                dslot = self.devices[(groups, device)] = PolicySlot(groups, device)
                dslot.active = self.slot(groups).active
                return dslot
        slot = self.slots.get(groups)
        if slot is None:
            slot = self.slots[groups] = PolicySlot(groups)
            slot.active = self._active(groups, {})
        return slot

    def set_policy(self, policy: Policy | None) -> None:
        """A new policy version: every slot gets its view of it; the replaced one is
        retired (its views forgotten: freed with it, see ``Policy.retire``)."""
        old, self.policy = self.policy, policy
        made: dict[int, ActivePolicy] = {}
        for groups, slot in self.slots.items():
            slot.active = self._active(groups, made)
        for (groups, _device), dslot in self.devices.items():
            dslot.active = self.slot(groups).active
        if old is not None and old is not policy:
            old.retire()

    def _active(
        self, groups: tuple[str, ...], made: dict[int, ActivePolicy]
    ) -> ActivePolicy | None:
        if self.policy is None:
            return None
        view = self.policy.view(groups)
        active = made.get(view.version)
        if active is None:
            # a view met before (another slot with the same zones) shares its memos
            active = next(
                (s.active for s in self.slots.values() if s.active is not None
                 and s.active.policy is view),
                None,
            )  # fmt: skip
            if active is None:
                active = ActivePolicy(view)
            made[view.version] = active
        return active
