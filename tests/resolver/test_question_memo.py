"""The pipeline's memo of parsed questions (Pipeline.handle, stages 2, 3 and 5) and the
cache entry's memo of its last answer tail: an answer from the memo is the answer the
full path gives, and nothing that must be checked per query is skipped."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from mamori import config
from mamori.resolver import pipeline as pipeline_mod
from mamori.resolver.cache import entry_from_response
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline

CFG = (
    '[server]\nrate_limit = 0\nallow = ["127.0.0.0/8"]\n{extra}'
    '[upstream]\nservers = ["127.0.0.1:9"]\n'
)
CLIENT = ("127.0.0.1", 5300)


def make_pipeline(extra: str = "") -> Pipeline:
    text = CFG.format(extra=extra)
    if "rate_limit" in extra:
        text = text.replace("rate_limit = 0\n", "", 1)
    return Pipeline(config.loads(text, Path("memo.toml")), EventQueue(1000))


def cache_answer(
    p: Pipeline | tuple[Pipeline, ...], name: str, addrs: int = 1, cd: int = 0, ttl: int = 300
) -> None:
    """Put NAME/A (``addrs`` addresses, TTL ``ttl``) in the cache(s) for DO=0 and CD=cd."""
    q = dns.message.make_query(name, "A")
    question = q.question[0].name.to_wire() + b"\x00\x01\x00\x01"
    r = dns.message.make_response(q)
    r.answer.append(
        dns.rrset.from_text_list(q.question[0].name, ttl, "IN", "A",
                                 [f"192.0.2.{i + 1}" for i in range(addrs)])
    )  # fmt: skip
    resp, now = r.to_wire(), time.time()
    for each in p if isinstance(p, tuple) else (p,):
        e, _ = entry_from_response(resp, question.lower(), now, 0, 86400, 3600, 0, False)
        each.cache.put(question.lower() + bytes([cd]), e)


def ask(
    p: Pipeline, wire: bytes, addr: tuple[str, int] = CLIENT, tcp: bool = False
) -> bytes | None:
    return p.handle(wire, addr, lambda r, a: None, tcp)


def query(name: str, qid: int, edns: int | bool = False, options: list | None = None) -> bytes:
    q = dns.message.make_query(name, "A", use_edns=edns, options=options or [])
    q.id = qid
    return q.to_wire()


def test_answers_from_the_memo_equal_the_full_path_and_keep_the_askers_case() -> None:
    p = make_pipeline()
    cache_answer(p, "www.example.test")
    first = ask(p, query("www.example.test", 1))
    assert first is not None and len(p._qmemo) == 1  # remembered on the cache hit
    for qid in (2, 3, 0xFFFF):
        resp = ask(p, query("www.example.test", qid))
        assert resp is not None
        assert resp[:2] == qid.to_bytes(2, "big") and resp[2:] == first[2:]
    # Another case of the same name (0x20 by a forwarder): the same entry, the asker's case.
    resp = ask(p, query("WwW.ExAmPlE.tEsT", 4))
    assert resp is not None
    m = dns.message.from_wire(resp)
    assert str(m.question[0].name) == "WwW.ExAmPlE.tEsT."
    assert [r.to_text() for r in m.answer[0]] == ["192.0.2.1"]
    assert p.stats.cache_hits == 5


def test_ttls_go_down_with_age_through_the_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    p = make_pipeline()
    cache_answer(p, "ttl.example.test", ttl=300)
    wire = query("ttl.example.test", 7)
    t0 = time.time()
    ttls = []
    for later in (0, 0, 5, 5, 61):
        monkeypatch.setattr(pipeline_mod, "_time", lambda later=later: t0 + later)
        resp = ask(p, wire)
        assert resp is not None
        ttls.append(dns.message.from_wire(resp).answer[0].ttl)
    assert ttls[0] == ttls[1] and ttls[2] == ttls[3] == ttls[0] - 5 and ttls[4] == ttls[0] - 61


def test_the_header_counts_are_part_of_what_is_remembered() -> None:
    p = make_pipeline()
    cache_answer(p, "www.example.test")
    edns = query("www.example.test", 1, edns=0)
    assert ask(p, edns) is not None and ask(p, edns) is not None  # remembered with its OPT
    # The same bytes after the header, but ARCOUNT 0: the OPT record is trailing junk.
    no_ar = edns[:10] + b"\x00\x00" + edns[12:]
    resp = ask(p, no_ar)
    assert resp is not None and dns.message.from_wire(resp).rcode() == dns.rcode.FORMERR
    plain = query("www.example.test", 2)
    assert ask(p, plain) is not None and ask(p, plain) is not None
    # ARCOUNT 1 with no OPT record after the question: malformed, not the remembered one.
    with_ar = plain[:10] + b"\x00\x01" + plain[12:]
    resp = ask(p, with_ar)
    assert resp is not None and dns.message.from_wire(resp).rcode() == dns.rcode.FORMERR


async def drop_tasks(p: Pipeline) -> None:
    """Cancel the upstream resolutions a miss started (nothing listens on port 9)."""
    for t in list(p.tasks):
        t.cancel()
    await asyncio.gather(*p.tasks, return_exceptions=True)
    p.close()


def test_the_cd_bit_picks_the_cache_key_after_the_memo() -> None:
    asyncio.run(_cd_bit())


async def _cd_bit() -> None:
    p = make_pipeline()
    cache_answer(p, "cd.example.test", cd=0)
    wire = query("cd.example.test", 1)
    assert ask(p, wire) is not None and ask(p, wire) is not None
    misses = p.stats.cache_misses
    with_cd = wire[:3] + bytes([wire[3] | 0x10]) + wire[4:]  # CD=1: another cache key
    assert ask(p, with_cd) is None  # a miss: resolved upstream (the answer comes later)
    assert p.stats.cache_misses == misses + 1
    await drop_tasks(p)


def test_udp_limit_from_the_memo_and_tcp_gets_the_whole_answer() -> None:
    p = make_pipeline()
    cache_answer(p, "big.example.test", addrs=40)  # 40 A records: > 512 bytes
    wire = query("big.example.test", 1)
    for _ in range(2):  # full path, then the memo
        resp = ask(p, wire)
        assert resp is not None
        m = dns.message.from_wire(resp)
        assert m.flags & dns.flags.TC and len(resp) <= 512
    resp = ask(p, wire, tcp=True)
    assert resp is not None
    m = dns.message.from_wire(resp)
    assert not m.flags & dns.flags.TC and len(m.answer[0]) == 40
    resp = ask(p, wire)  # and UDP again, truncated again
    assert resp is not None and dns.message.from_wire(resp).flags & dns.flags.TC


def test_a_reload_forgets_the_questions_limits_come_from_the_new_settings() -> None:
    p = make_pipeline("max_udp_size = 4096\n")
    cache_answer(p, "big.example.test", addrs=40)
    wire = query("big.example.test", 1, edns=0)  # dnspython's default payload: 1232
    for _ in range(2):
        resp = ask(p, wire)
        assert resp is not None and not dns.message.from_wire(resp).flags & dns.flags.TC
    p.configure(config.loads(CFG.format(extra="max_udp_size = 512\n"), Path("memo.toml")))
    assert not p._qmemo
    resp = ask(p, wire)
    assert resp is not None and dns.message.from_wire(resp).flags & dns.flags.TC
    assert len(resp) <= 512


def test_the_acl_still_decides_for_a_remembered_question() -> None:
    p = make_pipeline()
    cache_answer(p, "www.example.test")
    wire = query("www.example.test", 1)
    assert ask(p, wire) is not None and ask(p, wire) is not None
    resp = ask(p, wire, addr=("192.0.2.99", 5300))  # outside allow
    assert resp is not None and dns.message.from_wire(resp).rcode() == dns.rcode.REFUSED


def test_queries_with_edns_options_and_misses_are_not_remembered() -> None:
    asyncio.run(_options_and_misses())


async def _options_and_misses() -> None:
    p = make_pipeline()
    cache_answer(p, "www.example.test")
    cookie = [dns.edns.GenericOption(10, b"12345678")]
    for qid in range(3):
        resp = ask(p, query("www.example.test", qid, edns=0, options=cookie))
        assert resp is not None and dns.message.from_wire(resp).answer
    assert not p._qmemo  # options differ per client (cookies): answered, never remembered
    assert ask(p, query("miss.example.test", 9)) is None
    assert not p._qmemo  # a miss: not remembered (random subdomains never fill the memo)
    await drop_tasks(p)


def test_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_mod, "QMEMO_MAX", 8)
    p = make_pipeline()
    for i in range(30):
        cache_answer(p, f"n{i}.example.test")
        assert ask(p, query(f"n{i}.example.test", i)) is not None
        assert len(p._qmemo) <= 8
    resp = ask(p, query("n3.example.test", 99))  # forgotten at some point: still answered
    assert resp is not None and dns.message.from_wire(resp).answer


def _twins(extra: str = "") -> tuple[Pipeline, Pipeline]:
    a, b = make_pipeline(extra), make_pipeline(extra)
    for i in range(6):  # the same answer bytes in both caches
        cache_answer((a, b), f"n{i}.example.test", addrs=40 if i == 5 else 1)
    return a, b


@pytest.mark.parametrize("extra", ["", "rate_limit = 2\nrate_burst = 3\n"])
def test_a_batch_gets_what_one_query_at_a_time_gets(
    monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    """Pipeline.handle_batch (the batched listener's call) = handle per datagram: the
    answers, counters, events and LRU order, over remembered and new queries, allowed
    and refused clients, a rate limit, a big answer (TC), EDNS, misses, garbage, an
    expired entry and a policy that blocks one name."""
    asyncio.run(_batch_equals_one_by_one(monkeypatch, extra))


async def _batch_equals_one_by_one(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    clock = [time.time()]
    monkeypatch.setattr(pipeline_mod, "_time", lambda: clock[0])
    one_by_one, batched = _twins(extra)
    wires = [query(f"n{i}.example.test", i + 1) for i in range(6)]
    wires += [query("N1.EXAMPLE.test", 7), query("n2.example.test", 8, edns=0)]
    wires += [query("miss.example.test", 9), b"\x00\x01junk", b"\x12"]
    clients = [("127.0.0.1", 5300), ("127.0.0.2", 5301), ("192.0.2.9", 5302)]
    msgs = [(w, c) for w in wires for c in clients]  # the same query from each client
    passed_on = [0]

    def one(data: bytes, addr: Any) -> bytes | None:
        passed_on[0] += 1
        return batched.handle(data, addr, lambda r, x: None, False)

    for rnd in range(8):
        if rnd == 4:  # one name blocked from now on (a new policy version)
            policy = _block_policy()
            one_by_one.set_policy(policy)
            batched.set_policy(policy)
        if rnd == 6:  # time passes: TTLs age, n0's entry (TTL 300) expires
            clock[0] += 301
        expected = [one_by_one.handle(d, a, lambda r, a: None, False) for d, a in msgs * 3]
        got = batched.handle_batch(msgs * 3, one)
        assert got == expected, rnd
        for name in ("queries", "cache_hits", "cache_misses", "refused", "ratelimited", "rewrites"):
            assert getattr(batched.stats, name) == getattr(one_by_one.stats, name), (rnd, name)
        assert batched.events.drain() == one_by_one.events.drain()
        assert list(batched.cache.data) == list(one_by_one.cache.data)  # LRU order
        clock[0] += 0.4
    assert one_by_one.stats.cache_hits > (5 if extra else 50)
    assert passed_on[0] < 8 * len(msgs) * 3  # some answered in the batch call itself
    if extra:
        assert one_by_one.stats.ratelimited > 0
    for p in (one_by_one, batched):
        await drop_tasks(p)


def _block_policy() -> object:
    import tempfile

    from mamori.policy import zone as zone_mod
    from mamori.policy.engine import Policy, ZoneSettings

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "block.rpz"
        f.write_text(
            "$TTL 60\n@ SOA ns.rpz. host.rpz. 1 3600 600 86400 60\n@ NS ns.rpz.\n"
            "n3.example.test CNAME .\n"
        )
        return Policy.from_loaded([zone_mod.load(f, "rpz.test.")], [ZoneSettings("rpz.test.")], 7)
