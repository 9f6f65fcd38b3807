"""Applying IXFR differences to a loaded policy zone in place (no rebuild).

For each owner a delta touches, the owner's current records are rebuilt from
its rule (the compact index keeps actions, not records: a simple action maps
back to its canonical ``CNAME``), the deletions and additions applied, and the
owner's rule replaced. A 10-record delta costs ten small index updates, not a
million-rule reload. The caller runs this between queries (one event-loop
turn) and then swaps in a new Policy version, so memoised decisions go.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mamori.policy import steps
from mamori.policy.model import Action, LocalRecord, Rule, Trigger
from mamori.policy.rules import (
    COMPLEX_BASE,
    LoadedZone,
    Net,
    action_of,
    count_below_steps,
    make_rule,
)

RR = tuple[dns.name.Name, int, dns.rdata.Rdata]

_CANONICAL = {
    Action.NXDOMAIN: ".",
    Action.NODATA: "*.",
    Action.PASSTHRU: "rpz-passthru.",
    Action.DROP: "rpz-drop.",
    Action.TCP_ONLY: "rpz-tcp-only.",
}


class DeltaError(ValueError):
    """A difference that does not fit the zone (e.g. deleting what is not there)."""


STEP = 25  # owners planned per step (~3 ms: the loop answers queries between steps)


@dataclass
class Plan:
    """The new state of every owner a delta touches, computed without changing the zone."""

    apex: list[tuple[str, RR]] = field(default_factory=list)  # ("del"|"add", SOA/NS record)
    owners: list[tuple[Rule, Rule | None, Net | None]] = field(default_factory=list)
    simple_ttl: int | None = None


def apply(zone: LoadedZone, deleted: list[RR], added: list[RR]) -> None:
    """Apply one IXFR difference sequence (SOA records included) to *zone*."""
    steps.run(commit_steps(zone, steps.run(plan_steps(zone, deleted, added))))


def plan_steps(zone: LoadedZone, deleted: list[RR], added: list[RR]) -> Generator[None, None, Plan]:
    """Plan a delta, yielding every STEP owners; ``commit`` then applies it at once."""
    apex = dns.name.from_text(zone.name)
    owners: dict[dns.name.Name, tuple[list[RR], list[RR]]] = {}
    for i, rr in enumerate(deleted):
        owners.setdefault(rr[0], ([], []))[0].append(rr)
        if i % 500 == 499:
            yield  # hashing dnspython names is slow: ~3 us each
    for i, rr in enumerate(added):
        owners.setdefault(rr[0], ([], []))[1].append(rr)
        if i % 500 == 499:
            yield
    plan = Plan()
    for n, (owner, (dels, adds)) in enumerate(owners.items()):
        if n % STEP == STEP - 1:
            yield
        if owner == apex:
            plan.apex += [("del", rr) for rr in dels] + [("add", rr) for rr in adds]
            continue
        if not owner.is_subdomain(apex):
            continue  # out of zone: ignored, as when loading a file
        rel = owner.relativize(apex)
        current = records_of(zone, rel)
        for _n, _ttl, rd in dels:
            current = [
                r
                for r in current
                if not (
                    r.rdtype == rd.rdtype and (rd.rdtype == dns.rdatatype.CNAME or r.rdata == rd)
                )
            ]
        for _n, ttl, rd in adds:
            current = [r for r in current if not (r.rdtype == rd.rdtype and r.rdata == rd)]
            current.append(LocalRecord(rd.rdtype, ttl, rd))
        action, records = action_of(current, rel.to_text())
        new: Rule | None = None
        net: Net | None = None
        if action is not None:
            if not records and plan.simple_ttl is None:
                plan.simple_ttl = current[0].ttl
            labels = [lb.decode("ascii", "backslashreplace").lower() for lb in rel.labels]
            new, net = make_rule(zone.name, rel, labels, action, records)
        plan.owners.append((_probe(zone, rel), new, net))
    return plan


COMMIT_STEP = 1000  # owners switched per step (~1 ms)


def commit(zone: LoadedZone, plan: Plan) -> None:
    steps.run(commit_steps(zone, plan))


def commit_steps(zone: LoadedZone, plan: Plan) -> Generator[None, None, None]:
    """Apply a planned delta: index updates only, COMMIT_STEP owners per step.

    Each owner switches from its old rule to its new one within one step, so
    a query sees either; the caller publishes the new policy version (which
    drops memoised decisions) after the last step. The first change of a zone
    first counts the owners below each name (``rules.count_below_steps``,
    stepwise), so overlays know which empty non-terminals a change makes or
    removes.
    """
    yield from count_below_steps(zone)
    for op, (_n, ttl, rd) in plan.apex:
        if rd.rdtype == dns.rdatatype.NS:
            if op == "del":
                zone.apex_ns = [r for r in zone.apex_ns if r.rdata != rd]
            else:
                zone.apex_ns.append(LocalRecord(dns.rdatatype.NS, ttl, rd))
        elif rd.rdtype == dns.rdatatype.SOA and op == "add":
            zone.soa = LocalRecord(dns.rdatatype.SOA, ttl, rd)
            zone.serial = int(rd.serial)  # type: ignore[attr-defined]
    if zone.simple_ttl is None:
        zone.simple_ttl = plan.simple_ttl
    others: set[str] = set()
    later: list[tuple[Rule, Net | None]] = []
    for n, (probe, new, net) in enumerate(plan.owners):
        if n % COMMIT_STEP == COMMIT_STEP - 1:
            yield
        if probe.trigger is Trigger.QNAME:
            code = zone.pop_qname(probe.match_key, probe.wildcard)
            if code is not None and code >= COMPLEX_BASE:
                zone.complex[code - COMPLEX_BASE] = _TOMBSTONE
            if new is not None:
                zone.add(new, net)
        else:
            others.add(probe.owner.lower())
            if new is not None:
                later.append((new, net))
    if others:  # IP and NS triggers: one pass over those lists
        zone.other[:] = [r for r in zone.other if r.owner.lower() not in others]
        for trigger, items in zone.ip_rules.items():
            zone.ip_rules[trigger] = [(n, r) for n, r in items if r.owner.lower() not in others]
        for new, net in later:
            zone.add(new, net)


def _probe(zone: LoadedZone, rel: dns.name.Name) -> Rule:
    labels = [lb.decode("ascii", "backslashreplace").lower() for lb in rel.labels]
    rule, _net = make_rule(zone.name, rel, labels, Action.NXDOMAIN, (), validate=False)
    return rule


def records_of(zone: LoadedZone, rel: dns.name.Name) -> list[LocalRecord]:
    """The owner's records as the zone holds them now (canonical CNAME for simple actions)."""
    probe = _probe(zone, rel)
    if probe.trigger is Trigger.QNAME:
        code = (zone.wild if probe.wildcard else zone.exact).get(probe.match_key)
        if code is None:
            return []
        rule = zone.rule_for(probe.match_key, probe.wildcard, code)
        if rule.typed != probe.typed:  # NAME and NAME.mamori-qtype share the index key
            raise DeltaError(f"{rel}: the name has both a mamori-qtype rule and another rule")
    else:
        found = next((r for r in zone.other if r.owner.lower() == probe.owner.lower()), None)
        if found is None:
            return []
        rule = found
    if rule.records:
        return list(rule.records)
    target = _CANONICAL.get(rule.action)
    if target is None:
        return []
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CNAME, target)
    return [LocalRecord(dns.rdatatype.CNAME, 0, rd)]


# A removed Local-Data rule's slot (codes are positions; the slot is not reused).
_TOMBSTONE = Rule("", 0, Trigger.QNAME, "", Action.PASSTHRU)
