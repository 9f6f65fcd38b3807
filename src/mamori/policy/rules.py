"""Policy zone contents as rules, in the compact form the loaders build.

A rule's trigger comes from its owner's suffix (``rpz-client-ip``, ``rpz-ip``,
``rpz-nsdname``, ``rpz-nsip``, otherwise QNAME) and its action from its records
(draft-vixie-dnsop-dns-rpz, BIND 9 ARM). An owner ending in ``mamori-qtype`` is
a QNAME rule for the name before that label whose action depends on the query
type (``qtype_branches``; mamori's own extension, see model.py). ``LoadedZone`` keeps QNAME rules as
small integer codes in sharded dicts (no object per rule); the loaders
(``fastload`` for one-line records, ``zone`` for everything dnspython reads)
and the IXFR delta code build and change it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mamori.dnsutil import wire
from mamori.policy.model import QTYPE_LABEL, Action, LocalRecord, Rule, Trigger
from mamori.policy.shards import ShardedIndex

IP_SUFFIX = {
    "rpz-client-ip": Trigger.CLIENT_IP,
    "rpz-ip": Trigger.RESPONSE_IP,
    "rpz-nsip": Trigger.NSIP,
}
SPECIAL_TARGETS = {
    ".": Action.NXDOMAIN,
    "*.": Action.NODATA,
    "rpz-passthru.": Action.PASSTHRU,
    "rpz-drop.": Action.DROP,
    "rpz-tcp-only.": Action.TCP_ONLY,
}


class ZoneError(ValueError):
    """A policy zone that cannot be used; the message names file:line."""


# Compact codes of QNAME rules: simple actions need no object per rule.
SIMPLE_CODES = {
    Action.NXDOMAIN: 0,
    Action.NODATA: 1,
    Action.PASSTHRU: 2,
    Action.DROP: 3,
    Action.TCP_ONLY: 4,
}
CODE_ACTIONS = {code: action for action, code in SIMPLE_CODES.items()}
COMPLEX_BASE = 8  # code >= 8: index + 8 into LoadedZone.complex (Local-Data rules)

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class LoadedZone:
    """One policy zone in compact form.

    QNAME rules live in two sharded dicts keyed by lowercased wire names (for a
    wildcard, the name below the ``*``) whose values are small ints; only
    Local-Data rules and the rarer trigger kinds keep a ``Rule`` object.
    """

    name: str
    soa: LocalRecord | None = None
    serial: int = 0
    exact: ShardedIndex = field(default_factory=ShardedIndex)
    wild: ShardedIndex = field(default_factory=ShardedIndex)
    complex: list[Rule] = field(default_factory=list)
    other: list[Rule] = field(default_factory=list)  # Client-IP, Response-IP, NSDNAME, NSIP
    ip_rules: dict[Trigger, list[tuple[Net, Rule]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" per skipped record
    apex_ns: list[LocalRecord] = field(default_factory=list)  # kept to publish the zone
    # TTL of simple-action rules (the compact index keeps no TTL per rule): the first seen
    simple_ttl: int | None = None
    pins: int = 0  # holders besides the policy (the publisher diffing versions): not freed
    # QNAME owner names strictly below each name (RFC 4592 existence: a name with owners
    # below it exists). None until the zone first changes in place (``count_below_steps``,
    # run by ``delta.commit_steps``); kept up to date by ``put_qname``/``pop_qname`` since.
    below: ShardedIndex | None = None

    @property
    def rule_count(self) -> int:
        return len(self.exact) + len(self.wild) + len(self.other)

    def add(self, rule: Rule, net: Net | None = None) -> None:
        """Add *rule*; ValueError when a ``mamori-qtype`` rule and a plain rule
        claim one name (the index holds one rule per name)."""
        if rule.trigger is Trigger.QNAME:
            index = self.wild if rule.wildcard else self.exact
            typed = rule.typed
            if typed or self.complex:  # (a zone of simple rules skips the probe)
                old = index.get(rule.match_key)
                if old is not None and (
                    typed or (old >= COMPLEX_BASE and self.complex[old - COMPLEX_BASE].typed)
                ):
                    raise ValueError(
                        f"{rule.owner}: the name has both a {QTYPE_LABEL} rule and another rule"
                    )
            code = SIMPLE_CODES.get(rule.action)
            if code is None or rule.records:
                code = COMPLEX_BASE + len(self.complex)
                self.complex.append(rule)
            self.put_qname(rule.match_key, rule.wildcard, code)
            return
        self.other.append(rule)
        if net is not None:
            self.ip_rules.setdefault(rule.trigger, []).append((net, rule))

    def put_qname(self, key: bytes, wildcard: bool, code: int) -> None:
        """Set the QNAME rule of owner *key* (``*.key`` when *wildcard*) to *code*."""
        index = self.wild if wildcard else self.exact
        if self.below is not None and key not in index:
            _count_below(self.below, key, wildcard, 1)
        index[key] = code

    def pop_qname(self, key: bytes, wildcard: bool) -> int | None:
        """Remove the QNAME rule of owner *key* (``*.key`` when *wildcard*); its code or None."""
        code = (self.wild if wildcard else self.exact).pop(key)
        if code is not None and self.below is not None:
            _count_below(self.below, key, wildcard, -1)
        return code

    def is_empty_nonterminal(self, key: bytes) -> bool:
        """Has *key* QNAME owners below it but no exact rule (RFC 4592 empty non-terminal)?

        Needs ``below`` (``count_below_steps``). The apex is never one.
        """
        assert self.below is not None, "count_below_steps first"
        return bool(key[0]) and key not in self.exact and bool(self.below.get(key))

    def rule_for(self, key: bytes, wildcard: bool, code: int) -> Rule:
        """The Rule behind a compact QNAME entry (built on a hit, not at load)."""
        if code >= COMPLEX_BASE:
            return self.complex[code - COMPLEX_BASE]
        return simple_rule(self.name, key, wildcard, code)

    def rules(self) -> list[Rule]:
        """Every rule as an object (tests, diagnostics; not for big zones)."""
        out = [self.rule_for(k, False, c) for k, c in self.exact.items()]
        out += [self.rule_for(k, True, c) for k, c in self.wild.items()]
        return out + self.other


def simple_rule(zone: str, key: bytes, wildcard: bool, code: int, zone_index: int = 0) -> Rule:
    """The QNAME Rule of a simple-action code (< COMPLEX_BASE) for *key* in *zone*."""
    text = wire.name_to_text(key)
    owner = text.rstrip(".") if text != "." else ""
    if wildcard:
        owner = f"*.{owner}" if owner else "*"
    return Rule(zone, zone_index, Trigger.QNAME, owner, CODE_ACTIONS[code], (), wildcard, key)


def make_rule(
    zone: str,
    rel: dns.name.Name,
    labels: list[str],
    action: Action,
    records: tuple[LocalRecord, ...],
    validate: bool = True,
) -> tuple[Rule, Net | None]:
    """A rule from its owner (relative to the zone) and action; ValueError if invalid.

    *validate* False skips checking a ``mamori-qtype`` rule's records (a probe
    that only wants the owner's trigger and key).
    """
    trigger = Trigger.QNAME
    net = None
    if labels[-1] in IP_SUFFIX:
        trigger = IP_SUFFIX[labels[-1]]
        net = parse_ip_trigger(labels[:-1])
    elif labels[-1] == "rpz-nsdname":
        trigger = Trigger.NSDNAME
    wildcard = labels[0] == "*"
    key = b""
    if trigger in (Trigger.QNAME, Trigger.NSDNAME):
        base = rel.labels[1:] if wildcard else rel.labels
        if trigger is Trigger.NSDNAME or labels[-1] == QTYPE_LABEL:
            base = base[:-1]  # drop the rpz-nsdname / mamori-qtype label
        key = dns.name.Name([*base, b""]).to_wire().lower()  # type: ignore[union-attr]
    rule = Rule(zone, 0, trigger, rel.to_text(), action, records, wildcard, key)
    if validate and rule.typed:
        if action is not Action.LOCAL_DATA:
            raise ValueError(f"{rule.owner}: a {QTYPE_LABEL} rule holds TXT records, not a CNAME")
        qtype_branches(rule)
    return rule, net


# What a mamori-qtype rule does for one query type: the action and its records
# (a CNAME for a rewrite), or None: the zone has no rule for the query.
Branch = tuple[Action, tuple[LocalRecord, ...]] | None


def qtype_branches(rule: Rule) -> tuple[dict[int, Branch], Branch]:
    """({query type: branch}, branch for every other type) of a ``mamori-qtype`` rule.

    The rule's TXT records hold strings ``TYPES=TARGET``: TYPES is ``*`` (every
    type not named elsewhere) or type mnemonics joined by ``|`` (``A|AAAA``,
    ``TYPE65``); TARGET is what a CNAME of an RPZ rule would say (``.``,
    ``*.``, ``rpz-passthru.``, ``rpz-drop.``, ``rpz-tcp-only.``, or a name to
    rewrite to) or ``-``: no rule in this zone for those types (evaluation goes
    on with the next zone). Types not covered and no ``*``: ``-``. ValueError
    for a record that is not TXT, a bad string, or a type named twice.
    """
    by_type: dict[int, Branch] = {}
    default: Branch = None
    seen_default = False
    for rec in rule.records:
        if rec.rdtype != dns.rdatatype.TXT:
            raise ValueError(f"a {QTYPE_LABEL} rule holds only TXT records")
        for raw in rec.rdata.strings:  # type: ignore[attr-defined]
            text = bytes(raw).decode("ascii", "replace")
            types, sep, target = text.partition("=")
            if not sep or not types or not target:
                raise ValueError(f"{text!r} is not TYPES=TARGET")
            branch = _branch(target.lower(), rec.ttl)
            if types == "*":
                if seen_default:
                    raise ValueError("'*' given twice")
                default, seen_default = branch, True
                continue
            for name in types.split("|"):
                try:
                    qtype = int(dns.rdatatype.from_text(name))
                except (dns.rdatatype.UnknownRdatatype, ValueError):
                    raise ValueError(f"unknown query type {name!r} in {text!r}") from None
                if qtype in by_type:
                    raise ValueError(f"query type {name} given twice")
                by_type[qtype] = branch
    return by_type, default


def _branch(target: str, ttl: int) -> Branch:
    if target == "-":
        return None
    action = SPECIAL_TARGETS.get(target)
    if action is not None:
        return action, ()
    try:
        rd = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.CNAME, target.rstrip(".") + ".", relativize=False
        )
    except (dns.exception.DNSException, ValueError) as e:
        raise ValueError(f"bad target {target!r}: {e}") from None
    return Action.LOCAL_DATA, (LocalRecord(dns.rdatatype.CNAME, ttl, rd),)


def action_of(
    records: list[LocalRecord], owner: str
) -> tuple[Action | None, tuple[LocalRecord, ...]]:
    """The action of an owner's records (None: no records, no rule)."""
    for r in records:
        if r.rdtype == dns.rdatatype.CNAME:
            target = r.rdata.target.to_text().lower()  # type: ignore[attr-defined]
            if target in SPECIAL_TARGETS:
                return SPECIAL_TARGETS[target], ()
            if target.rstrip(".") == owner.lower().rstrip("."):
                return Action.PASSTHRU, ()  # legacy passthru: CNAME to itself
            return Action.LOCAL_DATA, (r,)
    if not records:
        return None, ()
    return Action.LOCAL_DATA, tuple(records)


def parse_ip_trigger(labels: list[str]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``24.0.0.0.127`` -> 127.0.0.0/24; ``128.1.zz.db8.2001`` -> 2001:db8::1/128."""
    if len(labels) < 2 or not labels[0].isdigit():
        raise ValueError("IP trigger needs prefixlength.address labels")
    prefix = int(labels[0])
    words = list(reversed(labels[1:]))
    if len(words) == 4 and all(w.isdigit() for w in words):
        text = ".".join(words)
        if not 1 <= prefix <= 32:
            raise ValueError(f"IPv4 prefix length {prefix} out of range")
    else:
        if words.count("zz") > 1:
            raise ValueError("more than one 'zz' in an IPv6 trigger")
        text = ":".join("" if w == "zz" else w for w in words)
        if words[0] == "zz":
            text = ":" + text
        if words[-1] == "zz":
            text = text + ":"
        if not 1 <= prefix <= 128:
            raise ValueError(f"IPv6 prefix length {prefix} out of range")
    try:
        return ipaddress.ip_network(f"{text}/{prefix}", strict=True)
    except ValueError as e:
        raise ValueError(f"bad IP trigger {'.'.join(labels)}: {e}") from None


def count_below_steps(zone: LoadedZone) -> Generator[None, None, None]:
    """Fill ``zone.below``: per name, the QNAME owner names strictly below it.

    An exact owner counts for every name above it, a wildcard ``*.key`` for
    ``key`` and every name above that; the apex is not counted. Yields every
    few thousand owners (~5 ms); the index is set on the zone only when
    complete. Nothing to do when the zone has it already.
    """
    if zone.below is not None:
        return
    below = ShardedIndex()
    for wildcard, index in ((False, zone.exact), (True, zone.wild)):
        for shard in index.shards:
            keys = list(shard)
            for start in range(0, len(keys), 4096):
                for key in keys[start : start + 4096]:
                    _count_below(below, key, wildcard, 1)
                yield
    zone.below = below


def _count_below(below: ShardedIndex, key: bytes, wildcard: bool, step: int) -> None:
    """Add *step* to the count of every name above owner *key* (``*.key``: key included)."""
    i = 0 if wildcard else key[0] + 1 if key[0] else 0
    while key[i]:
        name = key[i:]
        n = (below.get(name) or 0) + step
        if n:
            below[name] = n
        else:
            below.pop(name)
        i += key[i] + 1


def free_steps(zone: LoadedZone) -> Generator[None, None, None]:
    """Empty *zone*'s indexes one shard per step.

    Dropping a million-entry index in one go holds the interpreter ~100 ms; a
    shard (1/64 of it) is freed in well under a millisecond, so an event loop
    driving this keeps answering between steps.
    """
    indexes = [zone.exact, zone.wild] + ([zone.below] if zone.below is not None else [])
    for index in indexes:
        for shard in index.shards:
            shard.clear()
            yield
