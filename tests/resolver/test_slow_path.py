"""The slow path in one process: policy on resolved answers, coalescing, serve-stale, outcomes.

The upstream is tests/support/fake_upstream.py (no sockets, no timing): each
test drives ``Pipeline.handle`` and waits for the answers the pipeline sends
through its reply callback.
"""

from __future__ import annotations

import asyncio
import marshal
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from mamori import config
from mamori.policy import zone as zone_mod
from mamori.policy.engine import Policy, ZoneSettings
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline
from mamori.resolver.query import Outcome
from tests.support.fake_upstream import FakeUpstream

UPSTREAM_ZONE = """
$TTL 300
@            SOA ns.test. host.test. 1 3600 600 86400 60
@            NS  ns.test.
ns           A   192.0.2.53
www          A   192.0.2.10
bad-ip       A   192.0.2.66
alias        CNAME www.other.test.
www.other    CNAME target.evil.test.
target.evil  A   192.0.2.20
ok.evil      A   192.0.2.21
"""

CD = dns.flags.RD | dns.flags.CD  # query flags with the CD bit (RFC 4035 3.2.2)
POLICY_SOA = "$TTL 60\n@ SOA ns.rpz. host.rpz. 1 3600 600 86400 60\n@ NS ns.rpz.\n"


def _cfg(extra: str = "") -> config.Config:
    return config.loads(
        '[server]\nrate_limit = 0\nallow = ["127.0.0.0/8"]\n'
        '[upstream]\nservers = ["127.0.0.1:9"]\n[store]\nqueue_size = 1000\n' + extra,
        Path("slow.toml"),
    )


def _policy(tmp_path: Path, body: str, version: int = 1, name: str = "rpz.test.") -> Policy:
    f = tmp_path / f"{name}{version}.zone"
    f.write_text(POLICY_SOA + body)
    z = zone_mod.load(f, name)
    return Policy.from_loaded([z], [ZoneSettings(name)], version)


class Client:
    """Sends queries into a pipeline and collects what it answers (now or later)."""

    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.answers: dict[int, list[bytes]] = {}

    def send(self, name: str, rdtype: str = "A", qid: int = 1, **kw: Any) -> bytes | None:
        q = dns.message.make_query(name, rdtype, **kw)
        q.id = qid
        resp = self.p.handle(q.to_wire(), ("127.0.0.1", 40000 + qid), self._reply, False)
        if resp is not None:
            self.answers.setdefault(qid, []).append(resp)
        return resp

    def _reply(self, resp: bytes, _addr: Any) -> None:
        self.answers.setdefault((resp[0] << 8) | resp[1], []).append(resp)

    async def ask(
        self, name: str, rdtype: str = "A", qid: int = 1, **kw: Any
    ) -> dns.message.Message:
        self.send(name, rdtype, qid, **kw)
        return await self.wait(qid)

    async def wait(self, qid: int) -> dns.message.Message:
        for _ in range(200):
            if self.answers.get(qid):
                return dns.message.from_wire(self.answers[qid].pop(0))
            await asyncio.sleep(0.005)
        raise AssertionError(f"no answer for query {qid}")


def _events(p: Pipeline) -> list[tuple[Any, ...]]:
    events = p.events.drain()
    for e in events:
        marshal.dumps(e)  # workers send events home with marshal: plain values only
    return events


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_misses_ask_the_upstream_once() -> None:
    async def go() -> None:
        up = FakeUpstream(UPSTREAM_ZONE)
        up.delay = 0.05
        p = Pipeline(_cfg(), EventQueue(1000), up)
        c = Client(p)
        for qid in range(1, 6):
            assert c.send("www.test", qid=qid) is None  # all five wait for the one question
        answers = [await c.wait(qid) for qid in range(1, 6)]
        assert all(a.rcode() == dns.rcode.NOERROR and a.answer for a in answers)
        assert up.questions == [("www.test.", "A")]
        assert p.stats.cache_misses == 5
        again = await c.ask("www.test", qid=9)
        assert again.answer and up.questions == [("www.test.", "A")], "then from the cache"
        outcomes = [e[7] for e in _events(p)]
        assert outcomes == [Outcome.RESOLVED] * 5 + [Outcome.CACHED]

    _run(go())


def test_response_ip_rule_rewrites_the_resolved_answer(tmp_path: Path) -> None:
    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        p.set_policy(_policy(tmp_path, "32.66.2.0.192.rpz-ip CNAME .\n"))
        c = Client(p)
        blocked = await c.ask("bad-ip.test")
        assert blocked.rcode() == dns.rcode.NXDOMAIN
        fine = await c.ask("www.test", qid=2)
        assert fine.rcode() == dns.rcode.NOERROR and fine.answer
        cached = await c.ask("bad-ip.test", qid=3)  # decided on the cached entry, memoised
        assert cached.rcode() == dns.rcode.NXDOMAIN
        ev = _events(p)
        assert [(e[7], e[8]) for e in ev] == [
            (Outcome.BLOCKED, "nxdomain"), (Outcome.RESOLVED, ""), (Outcome.BLOCKED, "nxdomain")
        ]  # fmt: skip
        assert ev[0][10][:4] == ("rpz.test.", "32.66.2.0.192.rpz-ip.rpz.test", "IP", "NXDOMAIN")

    _run(go())


def test_match_on_a_cname_target_keeps_the_upstream_cnames(tmp_path: Path) -> None:
    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        p.set_policy(_policy(tmp_path, "*.evil.test CNAME .\n"))
        c = Client(p)
        r = await c.ask("alias.test")
        assert r.rcode() == dns.rcode.NXDOMAIN
        chain = [(rr.name.to_text(), dns.rdatatype.to_text(rr.rdtype)) for rr in r.answer]
        assert chain == [("alias.test.", "CNAME"), ("www.other.test.", "CNAME")]
        ev = _events(p)
        assert ev[-1][7] == Outcome.BLOCKED and ev[-1][10][1] == "*.evil.test.rpz.test"

    _run(go())


def test_a_log_only_match_on_a_cname_target_is_logged_on_cache_hits_too(tmp_path: Path) -> None:
    """A preview feed (policy "disabled"): every answer's events carry what it would have
    blocked, the resolved one and those from the cache (the decision's memo) alike."""

    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        f = tmp_path / "preview.zone"
        f.write_text(POLICY_SOA + "*.evil.test CNAME .\n")
        zone = zone_mod.load(f, "cand.feeds.mamori.")
        p.set_policy(Policy.from_loaded([zone], [ZoneSettings(zone.name, "disabled")], 1))
        c = Client(p)
        for qid in (1, 2, 3):
            r = await c.ask("alias.test", qid=qid)
            assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 3  # never applied
        ev = _events(p)
        got = [(e[7], e[8], e[10][1] if e[10] else None) for e in ev]
        would = (Outcome.LOG_ONLY, "disabled", "*.evil.test.cand.feeds.mamori")
        assert got == [would, (Outcome.RESOLVED, "", None),
                       would, (Outcome.CACHED, "", None),
                       would, (Outcome.CACHED, "", None)]  # fmt: skip

    _run(go())


def test_passthru_lets_the_answer_through_and_is_not_a_block(tmp_path: Path) -> None:
    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        p.set_policy(_policy(tmp_path, "*.evil.test CNAME .\nok.evil.test CNAME rpz-passthru.\n"))
        c = Client(p)
        r = await c.ask("ok.evil.test")
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        ev = _events(p)
        assert ev[-1][7] == Outcome.RESOLVED and ev[-1][10][3] == "PASSTHRU"

    _run(go())


def test_policy_swap_overrides_what_was_memoised_for_a_cached_name(tmp_path: Path) -> None:
    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        p.set_policy(_policy(tmp_path, "other.example CNAME .\n", version=1))
        c = Client(p)
        assert (await c.ask("www.test")).rcode() == dns.rcode.NOERROR
        assert (await c.ask("www.test", qid=2)).rcode() == dns.rcode.NOERROR  # memo: no rule
        p.set_policy(_policy(tmp_path, "www.test CNAME .\n", version=2))
        assert (await c.ask("www.test", qid=3)).rcode() == dns.rcode.NXDOMAIN
        p.set_policy(_policy(tmp_path, "other.example CNAME .\n", version=3))
        assert (await c.ask("www.test", qid=4)).rcode() == dns.rcode.NOERROR

    _run(go())


def test_a_query_answered_blocked_then_allowed_carries_no_blocked_ede(tmp_path: Path) -> None:
    """The pipeline remembers parsed queries with their OPT record: a block's EDE 15
    (RFC 8914) must not stay with the query once the policy lets the name through."""

    def ede_codes(m: dns.message.Message) -> list[int]:
        return [o.code for o in m.options if isinstance(o, dns.edns.EDEOption)]

    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        p.set_policy(_policy(tmp_path, "www.test CNAME .\n", version=1))
        c = Client(p)
        for qid in (1, 2, 3):  # the rule, then its memoised rewrite, twice
            m = await c.ask("www.test", qid=qid, use_edns=0)
            assert m.rcode() == dns.rcode.NXDOMAIN and ede_codes(m) == [15]
        p.set_policy(_policy(tmp_path, "other.example CNAME .\n", version=2))
        for qid in (1, 2, 3):  # resolved, then cache hits (and the query remembered)
            m = await c.ask("www.test", qid=qid, use_edns=0)
            assert m.rcode() == dns.rcode.NOERROR and ede_codes(m) == []
        p.set_policy(_policy(tmp_path, "www.test CNAME .\n", version=3))
        for qid in (1, 2):
            m = await c.ask("www.test", qid=qid, use_edns=0)
            assert m.rcode() == dns.rcode.NXDOMAIN and ede_codes(m) == [15]

    _run(go())


def test_the_cd_bit_is_copied_into_every_answer(tmp_path: Path) -> None:
    """RFC 4035 section 3.2.2 (found by a fresh-eyes review: answers lacked CD)."""

    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        p.set_policy(_policy(tmp_path, "bad-ip.test CNAME .\n"))
        c = Client(p)
        for qid, name in enumerate(["www.test", "www.test", "bad-ip.test", "bad-ip.test"], 1):
            m = await c.ask(name, qid=qid, use_edns=0, flags=CD)  # resolved, cached;
            assert m.flags & dns.flags.CD, (name, qid)  # blocked, memoised rewrite
            plain = await c.ask(name, qid=100 + qid, use_edns=0)
            assert not plain.flags & dns.flags.CD
        refused = dns.message.make_query("www.test", "A", rdclass="CH")
        refused.flags |= dns.flags.CD
        resp = p.handle(refused.to_wire(), ("127.0.0.1", 40999), c._reply, False)
        assert resp is not None and dns.message.from_wire(resp).flags & dns.flags.CD

    _run(go())


def test_a_local_data_cname_keeps_the_cd_bit_and_caches_its_target_under_it(
    tmp_path: Path,
) -> None:
    """Found by the second fresh-eyes review: the followed answer lacked CD, and the
    target was fetched without CD yet cached under the CD=1 key."""

    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        p.set_policy(_policy(tmp_path, "redir.test CNAME www.test.\n"))
        c = Client(p)
        for qid, name in ((1, "redir.test"), (2, "www.test"), (3, "www.test")):
            m = await c.ask(name, qid=qid, use_edns=0, flags=CD)
            assert m.flags & dns.flags.CD and m.answer, (name, qid)
        assert not (await c.ask("www.test", qid=4, use_edns=0)).flags & dns.flags.CD

    _run(go())


def test_upstream_failure_serves_stale_with_ede_3_then_servfail_without_it() -> None:
    async def go() -> None:
        up = FakeUpstream(UPSTREAM_ZONE)
        p = Pipeline(_cfg("[cache]\nmin_ttl = 0\nmax_ttl = 1\n"), EventQueue(1000), up)
        c = Client(p)
        assert (await c.ask("www.test", use_edns=0)).answer
        entry = next(iter(p.cache.data.values()))
        entry.expires = time.time() - 1  # expired, still within the serve-stale window
        up.fail = True
        stale = await c.ask("www.test", qid=2, use_edns=0)
        assert stale.rcode() == dns.rcode.NOERROR and stale.answer
        assert stale.answer[0].ttl == p.cfg.cache.stale_answer_ttl
        assert [o.code for o in stale.options if isinstance(o, dns.edns.EDEOption)] == [
            dns.edns.EDECode.STALE_ANSWER
        ]
        nothing = await c.ask("unknown.test", qid=3)
        assert nothing.rcode() == dns.rcode.SERVFAIL
        ev = _events(p)
        assert [(e[7], e[8]) for e in ev[1:]] == [
            (Outcome.STALE, "upstream-failed"), (Outcome.ERROR, "upstream-failed")
        ]  # fmt: skip

    _run(go())


@pytest.mark.parametrize(
    ("query", "outcome", "reason"),
    [
        ("refused-client", Outcome.REFUSED, "acl"),
        ("axfr", Outcome.REFUSED, "meta-query"),
        ("badvers", Outcome.ERROR, "badvers"),
        ("status-opcode", Outcome.ERROR, "notimp"),
    ],
)
def test_answers_without_resolution_carry_their_outcome(
    query: str, outcome: Outcome, reason: str
) -> None:
    async def go() -> None:
        p = Pipeline(_cfg(), EventQueue(1000), FakeUpstream(UPSTREAM_ZONE))
        addr: Any = ("127.0.0.1", 1)
        if query == "refused-client":
            data, addr = dns.message.make_query("www.test", "A").to_wire(), ("192.0.2.1", 1)
        elif query == "axfr":
            data = dns.message.make_query("test", "AXFR").to_wire()
        elif query == "badvers":
            data = dns.message.make_query("www.test", "A", use_edns=1).to_wire()
        else:
            m = dns.message.make_query("www.test", "A")
            m.set_opcode(2)
            data = m.to_wire()
        assert p.handle(data, addr, lambda r, a: None, False) is not None
        [ev] = _events(p)
        assert (ev[7], ev[8]) == (outcome, reason)

    _run(go())
