"""A feed's block and allow rules resolved as AdGuard resolves them, name by name.

AdGuard (DNS filtering rules syntax; urlfilter's ``IsHigherPriority``) takes,
of every rule that matches a query, the one of highest priority: an
``$important`` exception, then an ``$important`` block, then an exception,
then a block -- however specific or general each rule's name is. An RPZ zone
instead answers a name with its closest owner (the exact name, then the
closest ``*.`` wildcard). So the rules cannot be written to the zone as they
come (``||a.example^$important`` and ``@@||a.example^`` would be two CNAMEs
at one owner, ``@@||example^`` would lose to ``||ads.example^``): each owner
gets the verdict AdGuard gives the names it answers for, taking the rules of
every enclosing wildcard into account.

A verdict may depend on the query type (``$dnstype``); ``$denyallow`` adds
owners for the names a rule leaves out. Addresses (Response-IP) and client
networks (Client-IP) are resolved per entry; a Client-IP rule wins over every
name rule of its zone in RPZ, so one whose list has a name rule of the
opposite kind with a higher priority cannot be written (``client_conflicts``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import NamedTuple

from mamori.feeds.modifiers import Modifiers
from mamori.feeds.normalize import Entry

BLOCK, ALLOW, NONE = "block", "allow", "none"
NAME_KINDS = ("domain", "wildcard")
Key = tuple[str, str]  # (kind, value)
Map = tuple[tuple[tuple[int, str], ...], str]  # ((qtype, verdict) ..., verdict for other types)
_NOTHING: Map = ((), NONE)
_PLAIN = Modifiers.of("")  # no modifiers (one shared object)
_BLOCKED: Map = ((), BLOCK)
_PLAIN_BLOCK = (False, _PLAIN)


class Verdict(NamedTuple):
    """What one owner of the zone does.

    *kind*/*value* as ``Entry``; *by_type*: (DNS type, verdict) for the types
    whose verdict differs from *default*, the verdict of every other type.
    Verdicts are BLOCK, ALLOW (RPZ PASSTHRU) or NONE (no rule: later zones decide).
    """

    kind: str
    value: str
    by_type: tuple[tuple[int, str], ...]
    default: str


def _rank(allow: bool, m: Modifiers) -> int:
    return m.rank + (1 if allow else 0)


def _ancestors(name: str) -> list[str]:
    """The names above *name*, closest first (``a.b.example`` -> ``b.example``, ``example``)."""
    out = []
    i = name.find(".")
    while i >= 0:
        out.append(name[i + 1 :])
        i = name.find(".", i + 1)
    return out


def blocks_only(entries: list[Entry], exceptions: list[Entry]) -> bool:
    """Nothing to resolve: no exception, no modifier, no client rule (most threat feeds)."""
    return not exceptions and not any(e.modifiers or e.kind == "client" for e in entries)


def resolve(entries: Iterable[Entry], exceptions: Iterable[Entry]) -> list[Verdict]:
    """The verdict of every owner the zone needs (in no particular order).

    *entries* are block rules, *exceptions* allow rules (``@@``). Client
    entries in conflict (``client_conflicts``) are left out.
    """
    entries, exceptions = list(entries), list(exceptions)
    if blocks_only(entries, exceptions):  # every owner blocks
        return [Verdict(k, v, (), BLOCK) for k, v in {(e.kind, e.value) for e in entries}]
    names: dict[Key, list[tuple[bool, Modifiers]]] = {}
    others: dict[Key, list[tuple[bool, Modifiers]]] = {}
    clients: list[tuple[Entry, bool]] = []
    special: set[str] = set()  # names with an exception or a modifier as a wildcard rule
    for allow, items in ((False, entries), (True, exceptions)):
        for e in items:
            m = Modifiers.of(e.modifiers) if e.modifiers else _PLAIN
            key = (e.kind, e.value)
            if e.kind in NAME_KINDS:
                names.setdefault(key, []).append((allow, m))
                if e.kind == "wildcard" and (allow or e.modifiers):
                    special.add(e.value)
            else:
                others.setdefault(key, []).append((allow, m))
                if e.kind == "client":
                    clients.append((e, allow))
    keys = set(names)
    added: set[Key] = set()
    for (kind, value), rules in names.items():
        for _allow, m in rules:
            for d in m.denyallow:
                if kind == "wildcard" and d.endswith("." + value):
                    added.update((("domain", d), ("wildcard", d)))
    added -= keys
    keys |= added
    wild = {v for k, v in keys if k == "wildcard"}
    verdicts = {key: _verdict(key, names, special) for key in keys}
    out: list[Verdict] = []
    for key, v in verdicts.items():
        if (key in added or v == _NOTHING) and v == _fallback(key[1], wild, verdicts):
            continue  # the zone gives these names that verdict without this owner
        out.append(Verdict(key[0], key[1], *v))
    refused: set[tuple[Key, bool, str]] = set()
    if clients:
        for e, allow, _why in client_conflicts(entries, exceptions):
            refused.add(((e.kind, e.value), allow, e.modifiers))
    for key, rules in others.items():
        kept = [(a, m) for a, m in rules if (key, a, m.text()) not in refused]
        if kept:
            best = max(_rank(a, m) for a, m in kept)
            out.append(Verdict(key[0], key[1], (), ALLOW if best % 2 else BLOCK))
    return out


def _verdict(key: Key, names: dict[Key, list[tuple[bool, Modifiers]]], special: set[str]) -> Map:
    """The verdict map of an owner: its own rules and those of every enclosing wildcard.

    *special*: names whose wildcard rules are exceptions or have modifiers;
    without any, an owner of plain blocks is a plain block (no walk up).
    """
    n = key[1]
    own = names.get(key, [])
    if own and all(r == _PLAIN_BLOCK for r in own):
        # Plain blocks: only an enclosing wildcard with an exception or a modifier
        # can change that (more plain blocks cannot).
        if len(special) <= 16:  # a few: test them as suffixes (no walk up)
            above = [a for a in special if n.endswith("." + a)]
        else:
            above = [a for a in _ancestors(n) if a in special]
        if not above:
            return _BLOCKED
        rules = list(own)
        for a in above:
            rules += names[("wildcard", a)]
    else:
        rules = list(own)
        for a in _ancestors(n):
            rules += names.get(("wildcard", a), ())
    rules = [(a, m) for a, m in rules if not m.excludes(n)]
    if not rules:
        return _NOTHING
    mentioned = sorted({t for _a, m in rules for t in m.qtypes})
    default = _best(rules, None)
    by_type = tuple((t, v) for t in mentioned if (v := _best(rules, t)) != default)
    return by_type, default


def _best(rules: list[tuple[bool, Modifiers]], qtype: int | None) -> str:
    """The verdict of the highest-priority rule for *qtype* (None: a type no rule names)."""
    top = -1
    for allow, m in rules:
        if (m.admits_others() if qtype is None else m.admits(qtype)) and _rank(allow, m) > top:
            top = _rank(allow, m)
    if top < 0:
        return NONE
    return ALLOW if top % 2 else BLOCK


def _fallback(name: str, wild: set[str], verdicts: dict[Key, Map]) -> Map:
    """What the zone gives *name*'s owner without it: the closest enclosing wildcard's verdict."""
    for a in _ancestors(name):
        if a in wild:
            return verdicts[("wildcard", a)]
    return _NOTHING


def client_conflicts(
    entries: Iterable[Entry], exceptions: Iterable[Entry]
) -> list[tuple[Entry, bool, str]]:
    """Client entries that RPZ cannot apply as AdGuard does: (entry, is an exception, reason).

    A Client-IP rule answers every query of its clients before any name rule
    of its zone. That is AdGuard's answer only when no rule of the opposite
    kind (block vs exception) has a higher priority: no name or address rule
    of the list, no client rule for an overlapping network.
    """
    rules = [(e, False) for e in entries] + [(e, True) for e in exceptions]
    top = {False: -1, True: -1}  # highest rank of the non-client blocks / exceptions
    clients = []
    for e, allow in rules:
        m = Modifiers.of(e.modifiers)
        if e.kind == "client":
            clients.append((e, allow, _rank(allow, m), ipaddress.ip_network(e.value)))
        else:
            top[allow] = max(top[allow], _rank(allow, m))
    out = []
    for e, allow, rank, net in clients:
        opposite = "blocks" if allow else "exceptions"
        if top[not allow] > rank:
            out.append(
                (
                    e,
                    allow,
                    f"$client: the list's {opposite} of higher priority would lose"
                    " to it (RPZ applies Client-IP before any name)",
                )
            )
            continue
        for e2, allow2, rank2, net2 in clients:
            overlap = net.version == net2.version and net.overlaps(net2)
            if allow2 != allow and rank2 > rank and overlap:
                out.append((e, allow, f"$client: {e2.value} has {opposite} of higher priority"))
                break
    return out
