"""Policy slots per set of client groups: the view each client record keeps."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from mamori.policy import engine, zone
from mamori.policy.groups import GroupClassifier
from mamori.resolver.acl import ClientTable
from mamori.resolver.active_policy import PolicySlots

SOA = "@ SOA ns.example. host.example. 1 3600 600 86400 60\n@ NS ns.example.\n"


def _policy(tmp_path: Path, version: int, kids_groups: tuple[str, ...]) -> engine.Policy:
    zones, settings = [], []
    for name, groups in (("all.rpz.", ()), ("kids.rpz.", kids_groups)):
        f = tmp_path / f"{name}{version}"
        f.write_text("$TTL 300\n" + SOA + "x.example CNAME .\n")
        zones.append(zone.load(f, name))
        settings.append(engine.ZoneSettings(name, groups=groups))
    return engine.Policy.from_loaded(zones, settings, version)


def test_client_records_keep_the_slot_of_their_groups(tmp_path: Path) -> None:
    slots = PolicySlots()
    slots.set_policy(_policy(tmp_path, 1, ("kids",)))
    groups = GroupClassifier([("kids", ["192.0.2.0/28"]), ("guests", ["192.0.2.8/29"])])
    table = ClientTable(("0.0.0.0/0",), 10, slots, groups)
    none, kid, both = (table.lookup(ip, 0.0) for ip in ("192.0.2.100", "192.0.2.1", "192.0.2.9"))
    guest = table.lookup("192.0.2.20", 0.0)
    assert none.slot is slots.default and none.slot.label == ""
    assert kid.slot.label == "kids" and both.slot.label == "kids,guests"
    assert guest.slot is none.slot or guest.slot.label == ""
    assert none.slot.active is not None and kid.slot.active is not None
    assert [s.name for s in none.slot.active.policy.settings] == ["all.rpz."]
    assert [s.name for s in kid.slot.active.policy.settings] == ["all.rpz.", "kids.rpz."]
    # "kids" and "kids,guests" see the same zones: one view, one set of memos
    assert both.slot.active is kid.slot.active
    assert kid.slot.active.version != none.slot.active.version
    # a new version (here: kids.rpz now for everyone) reaches every slot, views rebuilt
    slots.set_policy(_policy(tmp_path, 2, ()))
    assert kid.slot.active is none.slot.active is both.slot.active
    assert none.slot.active.version == 2
    slots.set_policy(None)
    assert kid.slot.active is None and none.slot.active is None


def test_without_groups_every_client_shares_one_slot(tmp_path: Path) -> None:
    slots = PolicySlots()
    slots.set_policy(_policy(tmp_path, 1, ()))
    table = ClientTable(("0.0.0.0/0",), 10, slots, GroupClassifier([]))
    a, b = table.lookup("192.0.2.1", 0.0), table.lookup("198.51.100.1", 0.0)
    assert a.slot is b.slot is slots.default
    assert table.groups is None  # no classification at all


def test_a_replaced_version_and_its_views_are_freed_without_the_cyclic_gc(
    tmp_path: Path,
) -> None:
    """The data plane freezes every object alive at a swap (gc.freeze(): the cyclic GC
    never looks at them again), so a replaced version must be freed by reference
    counting alone, else each swap keeps one version and its memos for good (the soak,
    docs/performance.md: workers grew by ~20 MB a minute with a feed update and an
    IXFR every minute)."""
    slots = PolicySlots()
    first = _policy(tmp_path, 1, ("kids",))
    slots.set_policy(first)
    others = slots.default.active  # clients in no group: a view of version 1 (all.rpz only)
    assert others is not None and others.policy is not first and others.policy.base is first
    whole, view = weakref.ref(first), weakref.ref(others.policy)
    del first, others
    gc.disable()
    try:
        slots.set_policy(_policy(tmp_path, 2, ("kids",)))
        assert whole() is None and view() is None
    finally:
        gc.enable()


def test_a_policy_without_groups_is_freed_when_its_last_reference_goes(tmp_path: Path) -> None:
    policy = _policy(tmp_path, 1, ())
    assert policy.base is policy
    ref = weakref.ref(policy)
    gc.disable()
    try:
        del policy
        assert ref() is None
    finally:
        gc.enable()


UPSTREAM = """
$TTL 300
@        SOA ns.test. host.test. 1 3600 600 86400 60
@        NS  ns.test.
ns       A   192.0.2.53
www      A   192.0.2.10
games    A   192.0.2.11
bad-ip   A   192.0.2.66
"""


def test_pipeline_answers_each_client_from_its_view_and_shares_no_rule_memos(
    tmp_path: Path,
) -> None:
    """Cache entries are shared by all clients; a decision memoised for one view is not
    taken for another, except "no zone at all has a rule" (the whole policy's version)."""
    import asyncio
    from typing import Any

    import dns.message
    import dns.rcode

    from mamori import config
    from mamori.resolver.events import EventQueue
    from mamori.resolver.pipeline import Pipeline
    from tests.support.fake_upstream import FakeUpstream

    cfg = config.loads(
        '[server]\nrate_limit = 0\nallow = ["127.0.0.0/8"]\n[upstream]\nservers = ["127.0.0.1:9"]\n'
        '[store]\nqueue_size = 1000\n[[group]]\nname = "kids"\nclients = ["127.0.0.2"]\n',
        Path("g.toml"),
    )
    f = tmp_path / "kids.rpz"
    f.write_text("$TTL 60\n" + SOA + "games.test CNAME .\n32.66.2.0.192.rpz-ip CNAME .\n")
    policy = engine.Policy.from_loaded(
        [zone.load(f, "kids.rpz.")], [engine.ZoneSettings("kids.rpz.", groups=("kids",))], 3
    )

    async def go() -> None:
        p = Pipeline(cfg, EventQueue(1000), FakeUpstream(UPSTREAM))
        p.set_policy(policy)
        answers: list[bytes] = []

        async def ask(name: str, client: str) -> int:
            q = dns.message.make_query(name, "A")
            resp = p.handle(q.to_wire(), (client, 5353), lambda r, _a: answers.append(r), False)
            for _ in range(200):
                if resp is not None:
                    break
                await asyncio.sleep(0.005)
                resp = answers.pop() if answers else None
            assert resp is not None
            return dns.message.from_wire(resp).rcode()

        for _ in range(3):  # in turn: the cached answer is shared, the decisions are not
            for name, kids_only in (("www.test", False), ("games.test", True),
                                    ("bad-ip.test", True)):  # fmt: skip
                for client in ("127.0.0.1", "127.0.0.2"):
                    blocked = kids_only and client == "127.0.0.2"
                    want = dns.rcode.NXDOMAIN if blocked else dns.rcode.NOERROR
                    assert await ask(name, client) == want, (name, client)
        key: Any = b"\x03www\x04test\x00\x00\x01\x00\x01\x00"
        assert p.cache.data[key].policy_version == 3  # no zone has a rule: every view takes it
        events = p.events.drain()
        assert {e[11] for e in events if e[1] == "127.0.0.2"} == {"kids"}
        assert {e[11] for e in events if e[1] == "127.0.0.1"} == {""}

    asyncio.run(go())
