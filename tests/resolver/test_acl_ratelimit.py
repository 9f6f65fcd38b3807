from __future__ import annotations

import asyncio
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest

from mamori import config
from mamori.resolver.acl import ClientTable
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline


def test_acl_matches_prefixes_and_ipv4_mapped_clients() -> None:
    t = ClientTable(("192.0.2.0/24", "2001:db8::/32"), burst=1)
    assert t.is_allowed("192.0.2.9")
    assert t.is_allowed("::ffff:192.0.2.9")
    assert t.is_allowed("2001:db8::1")
    assert not t.is_allowed("198.51.100.1")
    assert not t.is_allowed("::1")
    assert not t.is_allowed("not-an-ip")


@pytest.mark.parametrize("action", ["refused", "truncate", "drop"])
def test_rate_limit_actions(action: str) -> None:
    cfg = config.loads(
        f'[server]\nallow = ["127.0.0.1"]\nrate_limit = 1\nrate_burst = 2\n'
        f'rate_limit_action = "{action}"\n[upstream]\nservers = ["127.0.0.1:9"]\n',
        Path("rl.toml"),
    )
    query = dns.message.make_query("www.example.test", "A").to_wire()

    async def run() -> list[bytes | None]:
        p = Pipeline(cfg, EventQueue(100))
        out = [p.handle(query, ("127.0.0.1", 1000), lambda r, a: None, False) for _ in range(4)]
        for t in p.tasks:
            t.cancel()
        await asyncio.gather(*p.tasks, return_exceptions=True)
        assert p.stats.ratelimited == 2
        p.close()
        return out

    out = asyncio.run(run())
    assert out[0] is None and out[1] is None  # within the burst: sent upstream
    for resp in out[2:]:
        if action == "drop":
            assert resp is None
            continue
        assert resp is not None
        m = dns.message.from_wire(resp)
        assert len(resp) <= len(query) + 11, "never larger than the query: no amplification"
        if action == "refused":
            assert m.rcode() == dns.rcode.REFUSED
        else:
            assert m.flags & dns.flags.TC and m.rcode() == dns.rcode.NOERROR
