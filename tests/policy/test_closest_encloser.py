"""RPZ wildcards stop at names that exist (RFC 4592 closest encloser, as BIND 9 and Unbound).

A policy zone is a DNS zone: ``*.d`` synthesises a rule for a name below ``d``
only when ``d`` is that name's closest encloser, i.e. no name between them
exists -- neither an owner with a rule nor an empty non-terminal (a name with
owners below it). The expected values are BIND 9.18's answers to the same
zone (tests/integration/test_rpz_bind_interop.py asks BIND itself).
"""

from __future__ import annotations

from pathlib import Path

import dns.name
import pytest

from mamori.policy import engine, zone
from mamori.policy.model import Trigger

SOA = "$TTL 300\n@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"
RULES = """
*.2o7.example.net CNAME .
x.112.2o7.example.net CNAME .
*.nx.example CNAME .
pass.nx.example CNAME rpz-passthru.
*.w.example CNAME .
*.a.w.example CNAME rpz-passthru.
*.deep.example CNAME .
x.y.z.deep.example CNAME .
same.example CNAME .
*.same.example CNAME *.
x.y.same.example CNAME rpz-passthru.
"""


def _policy(tmp_path: Path, body: str) -> engine.Policy:
    f = tmp_path / "rpz.test.zone"
    f.write_text(SOA + body)
    z = zone.load(f, "rpz.test.")
    return engine.Policy.from_loaded([z], [engine.ZoneSettings(z.name)], 1)


def _check(p: engine.Policy, qname: str) -> tuple[str, str] | None:
    m, _ = p.check_query("192.0.2.1", dns.name.from_text(qname).to_wire())
    return (m.action.value, m.rule.owner) if m else None


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        # The first case: 112.2o7 is an empty non-terminal (x.112.2o7 is below it).
        ("112.2o7.example.net", None),
        ("y.112.2o7.example.net", None),
        ("x.112.2o7.example.net", ("NXDOMAIN", "x.112.2o7.example.net")),
        ("z.x.112.2o7.example.net", None),  # x.112.2o7 exists: the closest encloser
        ("foo.2o7.example.net", ("NXDOMAIN", "*.2o7.example.net")),
        ("a.b.2o7.example.net", ("NXDOMAIN", "*.2o7.example.net")),  # b.2o7 does not exist
        ("2o7.example.net", None),  # *.d never matches d
        # The second case: pass.nx has a rule of its own; below it nothing matches
        # (answered from upstream, and not a PASSTHRU hit either).
        ("sub.pass.nx.example", None),
        ("pass.nx.example", ("PASSTHRU", "pass.nx.example")),
        ("other.nx.example", ("NXDOMAIN", "*.nx.example")),
        # A wildcard makes its parent exist: a.w is an empty non-terminal.
        ("a.w.example", None),
        ("b.a.w.example", ("PASSTHRU", "*.a.w.example")),
        ("q.w.example", ("NXDOMAIN", "*.w.example")),
        # A deeper chain of empty non-terminals.
        ("z.deep.example", None),
        ("y.z.deep.example", None),
        ("q.y.z.deep.example", None),
        ("q.z.deep.example", None),
        ("other.deep.example", ("NXDOMAIN", "*.deep.example")),
        # Exact and wildcard at one owner, an exception further down.
        ("same.example", ("NXDOMAIN", "same.example")),
        ("a.same.example", ("NODATA", "*.same.example")),
        ("y.same.example", None),
        ("b.y.same.example", None),
        ("x.y.same.example", ("PASSTHRU", "x.y.same.example")),
        ("a.x.y.same.example", None),
    ],
)
def test_wildcard_applies_only_at_the_closest_encloser(
    tmp_path: Path, qname: str, expected: tuple[str, str] | None
) -> None:
    assert _check(_policy(tmp_path, RULES), qname) == expected


def test_root_wildcard_stops_at_names_of_the_zone(tmp_path: Path) -> None:
    p = _policy(tmp_path, "* CNAME .\nwww.example CNAME rpz-passthru.\n")
    assert _check(p, "com") == ("NXDOMAIN", "*")
    assert _check(p, "a.b.com") == ("NXDOMAIN", "*")
    assert _check(p, "example") is None  # an empty non-terminal
    assert _check(p, "other.example") is None  # its closest encloser is example
    assert _check(p, "www.example") == ("PASSTHRU", "www.example")


def _ns(p: engine.Policy, ns_name: str) -> str | None:
    m, _ = p.check_late((), (dns.name.from_text(ns_name).to_wire(),), (), p.nzones)
    assert m is None or m.rule.trigger is Trigger.NSDNAME
    return m.rule.owner if m else None


@pytest.mark.parametrize(
    ("ns_name", "expected"),
    [
        # BIND 9.18 with the same zone: only ns.bad and ns.y.x.bad are rewritten.
        ("ns.bad.example.test", "*.bad.example.test.rpz-nsdname"),
        ("ns.x.bad.example.test", None),  # x.bad is an empty non-terminal
        ("x.bad.example.test", None),
        ("ns.y.x.bad.example.test", "*.y.x.bad.example.test.rpz-nsdname"),
        ("y.x.bad.example.test", "y.x.bad.example.test.rpz-nsdname"),
    ],
)
def test_nsdname_wildcards_stop_at_names_of_the_zone_too(
    tmp_path: Path, ns_name: str, expected: str | None
) -> None:
    p = _policy(
        tmp_path,
        "*.bad.example.test.rpz-nsdname CNAME .\n"
        "y.x.bad.example.test.rpz-nsdname CNAME .\n"
        "*.y.x.bad.example.test.rpz-nsdname CNAME .\n",
    )
    assert _ns(p, ns_name) == expected


def test_qname_and_nsdname_names_are_apart(tmp_path: Path) -> None:
    """An NSDNAME owner lives below ``rpz-nsdname``: it does not make its name exist
    for QNAME matching (BIND: it is another name of the zone)."""
    p = _policy(tmp_path, "*.example CNAME .\nns.a.example.rpz-nsdname CNAME .\n")
    assert _check(p, "x.a.example") == ("NXDOMAIN", "*.example")
    assert _ns(p, "x.a.example") is None
