"""RPZ zone files as a feed (e.g. a provider's ``-rpz.conf``), read with the policy loader.

QNAME rules become names (``*.`` rules wildcards), ``rpz-ip`` rules
addresses and networks, ``rpz-client-ip`` rules client networks, PASSTHRU
rules allow rules; the feed's own actions are replaced by the ``[[feed]]
action``. Name-server triggers, Local-Data and mamori's per-type rules
(``NAME.mamori-qtype``) are skipped. Bad records count against the budget.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import dns.exception

from mamori.feeds.normalize import Entry
from mamori.feeds.parsers.base import ParseResult
from mamori.policy import fastload
from mamori.policy.model import Action, Trigger
from mamori.policy.rules import ZoneError
from mamori.policy.zone import load_with_dnspython

ORIGIN = "feed.invalid."  # the file's rules are read relative to its own $ORIGIN or this


def parse(lines: Iterable[str]) -> ParseResult:
    out = ParseResult()
    text = [ln.rstrip("\r\n") for ln in lines]
    out.lines = len(text)
    origin = next(
        (ln.split()[1] for ln in text[:50] if ln.startswith("$ORIGIN") and len(ln.split()) > 1),
        ORIGIN,
    )
    origin = origin.rstrip(".") + "."
    try:
        try:
            zone = fastload.load_lines(text, origin, Path("feed"), "skip")
        except fastload.NeedsFullParser:
            zone = load_with_dnspython("\n".join(text), origin, Path("feed"), "skip", False)
    except (ZoneError, dns.exception.DNSException) as e:  # e.g. a $ORIGIN that is no name
        out.rejected.append((0, "", f"not a usable RPZ zone: {e}"))
        return out
    for reason in zone.skipped:
        out.rejected.append((_line_of(reason), reason, reason))
    for rule in zone.rules():
        owner = rule.owner.lower()
        if rule.typed:
            out.skipped.append((0, rule.owner, "rule by query type (mamori-qtype)"))
            continue
        if rule.trigger is Trigger.QNAME:
            item = Entry("wildcard", owner[2:]) if rule.wildcard else Entry("domain", owner)
        elif rule.trigger in (Trigger.RESPONSE_IP, Trigger.CLIENT_IP):
            net = next((n for n, r in zone.ip_rules.get(rule.trigger, []) if r is rule), None)
            if net is None:
                continue
            single = net.num_addresses == 1
            if rule.trigger is Trigger.CLIENT_IP:
                item = Entry("client", str(net))
            else:
                item = Entry("ip", str(net.network_address)) if single else Entry("cidr", str(net))
        else:
            out.skipped.append((0, rule.owner, f"{rule.trigger.label} trigger"))
            continue
        if rule.action is Action.PASSTHRU:
            out.exceptions.append(item)
        elif rule.action is Action.LOCAL_DATA:
            out.skipped.append((0, rule.owner, "Local-Data rule"))
        else:
            out.entries.append(item)
    return out


def _line_of(reason: str) -> int:
    head = reason.split(":", 2)
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else 0
