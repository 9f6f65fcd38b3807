"""RPZ evaluation: triggers, actions, precedence (BIND 9 semantics)."""

from __future__ import annotations

from pathlib import Path

import dns.name
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.policy import engine, rules, zone
from mamori.policy.model import Action, Trigger

BASIC = Path(__file__).resolve().parents[3] / "shared/data/rpz/pdns/pdns/basic.rpz"
SOA = "@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"


def _zone(tmp_path: Path, name: str, body: str, index: int = 0) -> zone.LoadedZone:
    f = tmp_path / f"{name}zone"
    f.write_text("$TTL 300\n" + SOA + body)
    return zone.load(f, name)


def _policy(*zones: zone.LoadedZone, policies: tuple[str, ...] = ()) -> engine.Policy:
    settings_ = [
        engine.ZoneSettings(z.name, policies[i] if i < len(policies) else "given")
        for i, z in enumerate(zones)
    ]
    return engine.Policy.from_loaded(list(zones), settings_, 1)


def _check(p: engine.Policy, qname: str, client: str = "192.0.2.1") -> tuple[str, str] | None:
    m, _ = p.check_query(client, dns.name.from_text(qname).to_wire().lower())
    return (m.action.value, m.rule.owner) if m else None


@pytest.fixture
def basic() -> engine.Policy:
    if not BASIC.exists():
        pytest.skip("shared data not present")
    z = zone.load(BASIC, "domain.example.com.")
    return _policy(z)


@pytest.mark.parametrize(
    ("qname", "expected"),
    [
        ("nxdomain.org", ("NXDOMAIN", "nxdomain.org")),
        ("a.b.nxdomain.org", ("NXDOMAIN", "*.nxdomain.org")),
        ("mail.nxdomain.org", ("PASSTHRU", "mail.nxdomain.org")),  # exact beats wildcard
        ("example.net", ("DROP", "example.net")),
        ("www.example.net", ("DROP", "*.example.net")),
        ("truncate.org", ("TCP-ONLY", "truncate.org")),
        ("local-a.org", ("Local-Data", "local-a.org")),
        ("x.local.org", ("Local-Data", "*.local.org")),
        ("good.com", None),
        ("org", None),
    ],
)
def test_powerdns_basic_rpz_qname_rules(basic: engine.Policy, qname: str, expected: object) -> None:
    assert _check(basic, qname) == expected


def test_client_ip_beats_qname_in_the_same_zone(basic: engine.Policy) -> None:
    # 24.0.0.0.127.rpz-client-ip CNAME rpz-drop. covers 127.0.0.0/24
    assert _check(basic, "good.com", client="127.0.0.9") == ("DROP", "24.0.0.0.127.rpz-client-ip")
    assert _check(basic, "nxdomain.org", client="127.0.0.9") == (
        "DROP",
        "24.0.0.0.127.rpz-client-ip",
    )
    assert _check(basic, "good.com", client="10.0.0.1") == ("TCP-ONLY", "32.1.0.0.10.rpz-client-ip")
    assert _check(basic, "good.com", client="10.0.0.2") is None


def test_wildcard_does_not_match_apex(tmp_path: Path) -> None:
    p = _policy(_zone(tmp_path, "rpz.test.", "*.bad.example CNAME .\n"))
    assert _check(p, "bad.example") is None
    assert _check(p, "x.bad.example") == ("NXDOMAIN", "*.bad.example")


def test_closer_wildcard_beats_farther_one(tmp_path: Path) -> None:
    p = _policy(_zone(tmp_path, "rpz.test.", "*.example CNAME .\n*.sub.example CNAME *.\n"))
    assert _check(p, "a.sub.example") == ("NODATA", "*.sub.example")
    assert _check(p, "a.other.example") == ("NXDOMAIN", "*.example")


def test_first_zone_wins_and_passthru_stops_later_zones(tmp_path: Path) -> None:
    allow = _zone(tmp_path, "allow.test.", "ok.example CNAME rpz-passthru.\n", 0)
    block = _zone(tmp_path, "block.test.", "*.example CNAME .\nok.example CNAME .\n", 1)
    p = _policy(allow, block)
    assert _check(p, "ok.example") == ("PASSTHRU", "ok.example")
    assert _check(p, "bad.example") == ("NXDOMAIN", "*.example")


def test_zone_order_beats_trigger_precedence(tmp_path: Path) -> None:
    first = _zone(tmp_path, "first.test.", "bad.example CNAME *.\n", 0)
    second = _zone(tmp_path, "second.test.", "32.1.2.0.192.rpz-client-ip CNAME rpz-drop.\n", 1)
    p = _policy(first, second)
    assert _check(p, "bad.example", client="192.0.2.1") == ("NODATA", "bad.example")
    assert _check(p, "good.example", client="192.0.2.1") == ("DROP", "32.1.2.0.192.rpz-client-ip")


def test_longest_client_prefix_wins_ipv4_and_ipv6(tmp_path: Path) -> None:
    p = _policy(
        _zone(
            tmp_path,
            "rpz.test.",
            "8.0.0.0.10.rpz-client-ip CNAME .\n"
            "24.0.1.0.10.rpz-client-ip CNAME rpz-passthru.\n"
            "48.zz.db8.2001.rpz-client-ip CNAME rpz-drop.\n"
            "128.1.zz.db8.2001.rpz-client-ip CNAME *.\n",
        )
    )
    assert _check(p, "a.example", client="10.9.9.9")[0] == "NXDOMAIN"  # type: ignore[index]
    assert _check(p, "a.example", client="10.0.1.7")[0] == "PASSTHRU"  # type: ignore[index]
    assert _check(p, "a.example", client="2001:db8::5")[0] == "DROP"  # type: ignore[index]
    assert _check(p, "a.example", client="2001:db8::1")[0] == "NODATA"  # type: ignore[index]
    assert _check(p, "a.example", client="::ffff:10.1.1.1")[0] == "NXDOMAIN"  # type: ignore[index]


def test_policy_override_and_disabled(tmp_path: Path) -> None:
    log_only = _zone(tmp_path, "logonly.test.", "bad.example CNAME .\n", 0)
    forced = _zone(tmp_path, "forced.test.", "bad.example A 192.0.2.1\n", 1)
    p = _policy(log_only, forced, policies=("disabled", "nxdomain"))
    m, disabled = p.check_query("192.0.2.1", dns.name.from_text("bad.example").to_wire())
    assert [d.rule.zone for d in disabled] == ["logonly.test."]
    assert m is not None and m.action is Action.NXDOMAIN and m.rule.zone == "forced.test."


def test_zone_reports_file_and_line_of_a_bad_record(tmp_path: Path) -> None:
    f = tmp_path / "bad.zone"
    f.write_text("$TTL 300\n" + SOA + "ok.example CNAME .\nbroken.example A 999.1.1.1\n")
    with pytest.raises(zone.ZoneError, match=rf"{f}:5"):
        zone.load(f, "rpz.test.")
    z = zone.load(f, "rpz.test.", on_error="skip")
    assert [r.owner for r in z.rules()] == ["ok.example"]
    assert z.skipped and f"{f}:5" in z.skipped[0]


def test_skip_mode_finds_each_bad_record(tmp_path: Path) -> None:
    f = tmp_path / "mixed.zone"
    f.write_text(
        "$TTL 300\n"
        + SOA  # lines 1-3
        + "a.example CNAME .\n"  # 4
        + "bad1.example A 999.1.1.1\n"  # 5: rdata error (reported late by dnspython)
        + "b.example CNAME .\n"  # 6
        + "bad..two A 192.0.2.1\n"  # 7: owner error
        + 'bad3.example TXT ( "x"\n'  # 8-9: a valid multi-line record
        + '  "y" )\n'
        + "bad4.example BOGUS x\n"  # 10: unknown type
        + "c.example CNAME *.\n"  # 11
    )
    z = zone.load(f, "rpz.test.", on_error="skip")
    assert sorted(r.owner for r in z.rules()) == [
        "a.example",
        "b.example",
        "bad3.example",
        "c.example",
    ]
    assert [r.split(": ")[0] for r in z.skipped] == [f"{f}:5", f"{f}:7", f"{f}:10"]


def test_ip_trigger_encodings() -> None:
    assert str(rules.parse_ip_trigger(["24", "0", "2", "0", "192"])) == "192.0.2.0/24"
    assert str(rules.parse_ip_trigger(["128", "1", "zz", "db8", "2001"])) == "2001:db8::1/128"
    assert str(rules.parse_ip_trigger(["32", "zz", "2001"])) == "2001::/32"
    with pytest.raises(ValueError):
        rules.parse_ip_trigger(["24", "1", "2", "0", "192"])  # host bits set


def test_triggers_are_classified(tmp_path: Path) -> None:
    z = _zone(
        tmp_path,
        "rpz.test.",
        "a.example CNAME .\n32.1.2.0.192.rpz-ip CNAME .\nns.example.rpz-nsdname CNAME .\n"
        "32.1.2.0.192.rpz-nsip CNAME .\n32.1.2.0.192.rpz-client-ip CNAME .\n",
    )
    assert sorted(r.trigger.name for r in z.rules()) == sorted(t.name for t in Trigger)


labels = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, st.booleans()), min_size=1, max_size=30), names)
def test_index_agrees_with_naive_matcher(rules: list[tuple[str, bool]], qname: str) -> None:
    import tempfile

    body = "".join(f"{'*.' if w else ''}{n} CNAME .\n" for n, w in dict(rules).items())
    with tempfile.TemporaryDirectory() as d:
        p = _policy(_zone(Path(d), "rpz.test.", body))
    got = _check(p, qname)
    # Naive reference (RFC 4592): the exact owner, else the wildcard at the closest
    # encloser -- the closest name at or above qname that is an owner or has one below.
    owners = {("*." if w else "") + n for n, w in dict(rules).items()}
    existing = {o.split(".", i)[-1] for o in owners for i in range(o.count(".") + 1)}
    expect = None
    if qname in owners:
        expect = qname
    else:
        parts = qname.split(".")
        encloser = next((i for i in range(len(parts)) if ".".join(parts[i:]) in existing), None)
        if encloser:  # not qname itself (an empty non-terminal matches nothing)
            wild = "*." + ".".join(parts[encloser:])
            expect = wild if wild in owners else None
    assert got == (("NXDOMAIN", expect) if expect else None)


FEEDS = Path(__file__).resolve().parents[3] / "shared/data/feeds"


@pytest.mark.parametrize(
    ("path", "origin"),
    [
        (BASIC, "domain.example.com."),
        (FEEDS / "urlhaus-filter/urlhaus-filter-rpz.conf", "urlhaus.rpz."),
    ],
)
def test_fast_loader_agrees_with_dnspython(path: Path, origin: str) -> None:
    if not path.exists():
        pytest.skip("shared data not present")
    from mamori.policy import fastload

    text = path.read_text()
    fast = fastload.load_lines(text.splitlines(), origin, path, "refuse")
    slow = zone.load_with_dnspython(text, origin, path, "refuse")

    def view(z: zone.LoadedZone) -> set[tuple[str, str, str, tuple[str, ...]]]:
        return {
            (
                r.owner,
                r.trigger.name,
                r.action.value,
                tuple(sorted(x.rdata.to_text() for x in r.records)),
            )
            for r in z.rules()
        }

    assert view(fast) == view(slow)
    assert fast.serial == slow.serial and fast.rule_count == slow.rule_count
    assert fast.soa is not None and slow.soa is not None
    assert fast.soa.rdata == slow.soa.rdata


def test_urlhaus_feed_counts_and_samples() -> None:
    path = FEEDS / "urlhaus-filter/urlhaus-filter-rpz.conf"
    if not path.exists():
        pytest.skip("shared data not present")
    z = zone.load(path, "urlhaus.rpz.")
    lines = [ln for ln in path.read_text().splitlines() if ln.endswith(" CNAME .")]
    assert z.rule_count == len(lines) > 100
    p = _policy(z)
    first = lines[0].split()[0]
    assert _check(p, first) == ("NXDOMAIN", first)
    assert _check(p, "not-listed.example") is None


def test_fast_loader_hands_unusual_files_to_dnspython(tmp_path: Path) -> None:
    z = _zone(tmp_path, "rpz.test.", 'txt.example TXT "quoted; text"\nesc\\.dot.example CNAME .\n')
    owners = sorted(r.owner for r in z.rules())
    assert owners == ["esc\\.dot.example", "txt.example"]


def _addrs(*ips: str) -> tuple[tuple[int, int], ...]:
    import ipaddress

    return tuple((ipaddress.ip_address(i).version, int(ipaddress.ip_address(i))) for i in ips)


def test_response_ip_longest_prefix_then_smallest_network(tmp_path: Path) -> None:
    p = _policy(
        _zone(
            tmp_path,
            "rpz.test.",
            "16.0.0.2.192.rpz-ip CNAME .\n"  # 192.2.0.0/16
            "24.0.2.0.192.rpz-ip CNAME *.\n"  # 192.0.2.0/24
            "32.9.2.0.192.rpz-ip CNAME rpz-drop.\n"  # 192.0.2.9/32
            "24.0.3.0.192.rpz-ip CNAME rpz-passthru.\n"  # 192.0.3.0/24
            "64.zz.db8.2001.rpz-ip CNAME .\n",  # 2001:db8::/64
        )
    )

    def action(*ips: str) -> str | None:
        m, _ = p.check_response(_addrs(*ips))
        return m.action.value if m else None

    assert action("192.0.2.1") == "NODATA"
    assert action("192.0.2.1", "192.0.2.9") == "DROP"  # the longest prefix of any address
    assert action("192.0.3.7", "192.0.2.1") == "NODATA"  # same length: smaller network wins
    assert action("192.2.200.1") == "NXDOMAIN"
    assert action("2001:db8::77") == "NXDOMAIN"
    assert action("198.51.100.1") is None
    assert p.check_response(()) == (None, [])


def test_response_ip_zone_order_and_disabled(tmp_path: Path) -> None:
    first = _zone(tmp_path, "first.test.", "24.0.2.0.192.rpz-ip CNAME .\n", 0)
    second = _zone(tmp_path, "second.test.", "32.1.2.0.192.rpz-ip CNAME *.\n", 1)
    m, _ = _policy(first, second).check_response(_addrs("192.0.2.1"))
    assert m is not None and m.rule.zone == "first.test."  # zone order beats prefix length
    m, logged = _policy(first, second, policies=("disabled",)).check_response(_addrs("192.0.2.1"))
    assert [x.rule.zone for x in logged] == ["first.test."]
    assert m is not None and m.action is Action.NODATA


# ------------------------------------------------- Response-IP, NSDNAME, NSIP
def _w(name: str) -> bytes:
    return dns.name.from_text(name).to_wire().lower()


def _ip(text: str) -> tuple[int, int]:
    import ipaddress

    a = ipaddress.ip_address(text)
    return a.version, int(a)


LATE = """ns1.evil.test.rpz-nsdname CNAME .
*.bulletproof.test.rpz-nsdname CNAME *.
32.9.113.0.203.rpz-nsip CNAME rpz-drop.
24.0.113.0.203.rpz-nsip CNAME .
32.20.2.0.192.rpz-ip CNAME rpz-tcp-only.
"""


def test_nsdname_exact_and_wildcard(tmp_path: Path) -> None:
    p = _policy(_zone(tmp_path, "late.", LATE))
    m, _ = p.check_late((), (_w("ns1.evil.test"),), (), p.nzones)
    assert m is not None and m.rule.trigger is Trigger.NSDNAME and m.action is Action.NXDOMAIN
    m, _ = p.check_late((), (_w("a.ns.bulletproof.test"),), (), p.nzones)
    assert m is not None and m.action is Action.NODATA and m.rule.owner.startswith("*.")
    # "*.bulletproof.test" does not match bulletproof.test itself
    assert p.check_late((), (_w("bulletproof.test"),), (), p.nzones)[0] is None
    assert p.check_late((), (_w("ns1.good.test"),), (), p.nzones)[0] is None


def test_nsip_longest_prefix_wins(tmp_path: Path) -> None:
    p = _policy(_zone(tmp_path, "late.", LATE))
    m, _ = p.check_late((), (), (_ip("203.0.113.9"),), p.nzones)
    assert m is not None and m.rule.trigger is Trigger.NSIP and m.action is Action.DROP
    m, _ = p.check_late((), (), (_ip("203.0.113.10"),), p.nzones)
    assert m is not None and m.action is Action.NXDOMAIN


def test_precedence_inside_a_zone_response_ip_nsdname_nsip(tmp_path: Path) -> None:
    p = _policy(_zone(tmp_path, "late.", LATE))
    ns, nsip, addrs = (_w("ns1.evil.test"),), (_ip("203.0.113.9"),), (_ip("192.0.2.20"),)
    assert p.check_late(addrs, ns, nsip, p.nzones)[0].rule.trigger is Trigger.RESPONSE_IP  # type: ignore[union-attr]
    assert p.check_late((), ns, nsip, p.nzones)[0].rule.trigger is Trigger.NSDNAME  # type: ignore[union-attr]


def test_zone_order_decides_across_trigger_kinds(tmp_path: Path) -> None:
    allow = _zone(tmp_path, "allow.", "ns1.evil.test.rpz-nsdname CNAME rpz-passthru.\n")
    block = _zone(tmp_path, "block.", "www.evil.test CNAME .\n")
    p = _policy(allow, block)
    found, _ = p.check_query("192.0.2.1", _w("www.evil.test"))
    assert found is not None and found.rule.zone == "block."
    # An earlier zone has NS triggers: the QNAME match of zone 1 is not final ...
    assert p.late_before(found.rule.zone_index) and p.needs_ns(found.rule.zone_index)
    # ... and the earlier zone's NSDNAME PASSTHRU wins once the NS names are known.
    m, _ = p.check_late((), (_w("ns1.evil.test"),), (), found.rule.zone_index)
    assert m is not None and m.action is Action.PASSTHRU and m.rule.zone == "allow."
    reverse = _policy(block, allow)
    found, _ = reverse.check_query("192.0.2.1", _w("www.evil.test"))
    assert found is not None and not reverse.late_before(found.rule.zone_index)


def test_disabled_zone_logs_late_matches_and_continues(tmp_path: Path) -> None:
    first = _zone(tmp_path, "first.", "ns1.evil.test.rpz-nsdname CNAME .\n")
    second = _zone(tmp_path, "second.", "ns1.evil.test.rpz-nsdname CNAME *.\n")
    p = _policy(first, second, policies=("disabled", "given"))
    m, logged = p.check_late((), (_w("ns1.evil.test"),), (), p.nzones)
    assert m is not None and m.rule.zone == "second." and m.action is Action.NODATA
    assert [x.rule.zone for x in logged] == ["first."]


def test_nsdname_and_nsip_can_be_switched_off_per_zone(tmp_path: Path) -> None:
    z = _zone(tmp_path, "late.", LATE)
    st_ = engine.ZoneSettings("late.", nsdname_enable=False, nsip_enable=False)
    p = engine.Policy.from_loaded([z], [st_], 1)
    assert not p.has_ns
    assert p.check_late((), (_w("ns1.evil.test"),), (_ip("203.0.113.9"),), 1)[0] is None


def test_recursive_only_zones_skip_rd0_queries(tmp_path: Path) -> None:
    z = _zone(tmp_path, "ro.", "bad.test CNAME .\n")
    p = engine.Policy.from_loaded([z], [engine.ZoneSettings("ro.", recursive_only=True)], 1)
    assert p.check_query("192.0.2.1", _w("bad.test"), rd=True)[0] is not None
    assert p.check_query("192.0.2.1", _w("bad.test"), rd=False)[0] is None
