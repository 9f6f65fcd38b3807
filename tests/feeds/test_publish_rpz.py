"""Compiling feed entries to a policy zone; the guards."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamori.feeds import guard
from mamori.feeds.normalize import Entry
from mamori.feeds.publish import rpz as rpz_out
from mamori.policy import rules, zone


@pytest.mark.parametrize(
    "value", ["192.0.2.1", "192.0.2.0/24", "2001:db8::1", "2001:db8::/32", "2001:db8:0:1::/64"]
)
def test_ip_owner_round_trips_through_the_rpz_ip_encoding(value: str) -> None:
    import ipaddress

    owner = rpz_out.ip_owner(value)
    labels = owner.split(".")[:-1]
    net = rules.parse_ip_trigger(labels)
    assert net == ipaddress.ip_network(
        value if "/" in value else value + ("/128" if ":" in value else "/32")
    )


def test_zone_serial_moves_only_on_change(tmp_path: Path) -> None:
    f = tmp_path / "feed.rpz"
    rules = rpz_out.rules(
        [
            Entry("domain", "bad.example"),
            Entry("wildcard", "bad.example"),
            Entry("ip", "192.0.2.9"),
        ],
        [Entry("domain", "ok.bad.example")],
        ".",
    )
    assert rpz_out.write_zone(f, "x.feeds.mamori.", rules) == (1, True)
    assert rpz_out.write_zone(f, "x.feeds.mamori.", rules) == (1, False)
    fewer = [r for r in rules if "rpz-ip" not in r]
    assert rpz_out.write_zone(f, "x.feeds.mamori.", fewer) == (2, True)
    z = zone.load(f, "x.feeds.mamori.")
    assert z.serial == 2
    owners = {(r.owner, r.action.value) for r in z.rules()}
    assert ("*.bad.example", "NXDOMAIN") in owners and ("ok.bad.example", "PASSTHRU") in owners


def test_guards_refuse_public_suffixes_critical_names_and_the_allowlist(tmp_path: Path) -> None:
    allow = tmp_path / "allow.txt"
    allow.write_text("# ours\nmycompany.example\n")
    names = guard.read_allowlist(allow)
    assert guard.refusal(Entry("domain", "duckdns.org"), names) == "duckdns.org is a public suffix"
    assert guard.refusal(Entry("wildcard", "co.uk"), names) == "co.uk is a public suffix"
    assert "critical" in (guard.refusal(Entry("domain", "a.root-servers.net"), names) or "")
    assert "allowlisted" in (guard.refusal(Entry("domain", "vpn.mycompany.example"), names) or "")
    assert guard.refusal(Entry("domain", "evil.duckdns.org"), names) is None
    assert guard.refusal(Entry("ip", "192.0.2.1"), names) is None
