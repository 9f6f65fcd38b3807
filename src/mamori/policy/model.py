"""RPZ values: triggers, actions, rules (draft-vixie-dnsop-dns-rpz, BIND 9 ARM).

One extension of mamori's own: a QNAME rule whose owner ends in the label
``mamori-qtype`` (``name.mamori-qtype``, ``*.name.mamori-qtype``) applies to
``name`` with an action that depends on the query type (rules.py,
``qtype_branches``). BIND and Unbound read such an owner as a QNAME trigger
for a name under the non-existent top-level domain ``mamori-qtype``, which no
query asks: for them the rule does nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import dns.rdata


class Trigger(enum.IntEnum):
    """Trigger kinds; the value is the precedence inside one zone (lower wins)."""

    CLIENT_IP = 0
    QNAME = 1
    RESPONSE_IP = 2
    NSDNAME = 3
    NSIP = 4

    @property
    def label(self) -> str:
        return {0: "CLIENT-IP", 1: "QNAME", 2: "IP", 3: "NSDNAME", 4: "NSIP"}[self.value]


class Action(enum.Enum):
    NXDOMAIN = "NXDOMAIN"
    NODATA = "NODATA"
    PASSTHRU = "PASSTHRU"
    DROP = "DROP"
    TCP_ONLY = "TCP-ONLY"
    LOCAL_DATA = "Local-Data"  # includes CNAME redirects / walled gardens


@dataclass(frozen=True)
class LocalRecord:
    """One record of a Local-Data rule (owner is the query name when served)."""

    rdtype: int
    ttl: int
    rdata: dns.rdata.Rdata


QTYPE_LABEL = "mamori-qtype"  # last owner label of a rule that depends on the query type


@dataclass(frozen=True)
class Rule:
    zone: str  # policy zone name, e.g. "rpz.example."
    zone_index: int  # position in the configured order (lower wins)
    trigger: Trigger
    owner: str  # the rule's owner name relative to the zone, e.g. "*.bad.example"
    action: Action
    records: tuple[LocalRecord, ...] = ()
    wildcard: bool = False
    # QNAME/NSDNAME: lowercased wire name matched (for a wildcard, the name below the "*")
    match_key: bytes = b""

    @property
    def rule_name(self) -> str:
        """Owner as BIND logs it: ``bad.example.rpz.example``."""
        return f"{self.owner}.{self.zone.rstrip('.')}"

    @property
    def typed(self) -> bool:
        """A rule whose action depends on the query type (owner ``NAME.mamori-qtype``)?"""
        return self.trigger is Trigger.QNAME and (
            self.owner.rstrip(".").lower().rsplit(".", 1)[-1] == QTYPE_LABEL
        )


@dataclass(frozen=True)
class Match:
    """A rule with its zone's policy override applied; built once per rule (or first hit)."""

    rule: Rule
    action: Action  # after the zone's policy override
    disabled: bool = False  # policy "disabled": log only
    log: bool = True  # the zone's `log` setting (BIND-style text line)
    # Fields of a hit-log event: zone, rule, trigger, action, text-log it? (computed once)
    hit: tuple[str, str, str, str, bool] = field(init=False, compare=False)
    # The rule depends on the query type: the engine picks its branch (Policy.check_typed).
    typed: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        r = self.rule
        action = "disabled" if self.disabled else self.action.value
        object.__setattr__(self, "hit", (r.zone, r.rule_name, r.trigger.label, action, self.log))
        object.__setattr__(self, "typed", r.typed)
