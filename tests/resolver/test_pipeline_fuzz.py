"""Malformed input never crashes the pipeline: hypothesis-generated packets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori import config
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline

CFG = config.loads(
    '[server]\nrate_limit = 0\n[upstream]\nservers = ["127.0.0.1:9"]\ntimeout = 0.05\n'
    "[store]\nqueue_size = 10\n",
    Path("fuzz.toml"),
)
VALID = dns.message.make_query("www.example.test", "A", use_edns=0).to_wire()


def _mutations() -> st.SearchStrategy[bytes]:
    flips = st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=6)
    mutated = flips.map(lambda fs: _apply(VALID, fs))
    truncated = st.integers(0, len(VALID)).map(lambda n: VALID[:n])
    return st.one_of(st.binary(max_size=600), mutated, truncated)


def _apply(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for i, v in flips:
        b[i] = v
    return bytes(b)


async def _feed(packets: list[bytes], tcp: bool) -> list[bytes | None]:
    p = Pipeline(CFG, EventQueue(10))
    sent: list[bytes] = []
    out = [p.handle(pkt, ("127.0.0.1", 5353), lambda r, _a: sent.append(r), tcp) for pkt in packets]
    for t in list(p.tasks):
        t.cancel()
    await asyncio.gather(*p.tasks, return_exceptions=True)
    p.close()
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutations(), min_size=1, max_size=20), st.booleans())
def test_pipeline_never_raises_and_answers_look_like_responses(
    packets: list[bytes], tcp: bool
) -> None:
    results = asyncio.run(_feed(packets, tcp))
    for pkt, res in zip(packets, results, strict=True):
        if res is None:
            continue
        assert len(res) >= 12
        assert res[:2] == pkt[:2], "the answer carries the query ID"
        assert res[2] & 0x80, "QR is set"


def test_full_event_queue_drops_and_counts_without_blocking() -> None:
    async def run() -> tuple[int, int]:
        q = EventQueue(3)
        p = Pipeline(CFG, q)
        bad: Any = b"\x00\x01\x01\x00\x00\x02" + b"\x00" * 6  # QDCOUNT=2 -> FORMERR, logged
        for _ in range(10):
            assert p.handle(bad, ("127.0.0.1", 1), lambda r, a: None, False) is not None
        p.close()
        return len(q.items), q.dropped

    assert asyncio.run(run()) == (3, 7)
