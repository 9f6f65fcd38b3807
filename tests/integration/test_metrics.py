"""/metrics: Prometheus text from a running mamori after real queries (some blocked)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _scrape(url: str, token: str = "") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=3) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_after_queries_and_blocks(tmp_path: Path, upstream: AuthServer) -> None:
    port = free_port()
    (tmp_path / "block.rpz").write_text(
        "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n@ NS localhost.\n"
        "mx1.example.test CNAME .\n"
    )
    feed = tmp_path / "coin.txt"
    feed.write_text("mail.example.test\n")
    extra = (
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{port}"\nmetrics_token = "s3cret"\n'
        "metrics_allow = []\n"
        f'[[rpz]]\nname = "block.rpz"\nfile = "{tmp_path / "block.rpz"}"\n'
        f'[[feed]]\nname = "coin"\npath = "{feed}"\nformat = "domains"\ncategory = "cryptominer"\n'
        "[policy]\nwatch_interval = 0.2\n"
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert until(lambda: m.query("mail.example.test").rcode() == 3, 20)  # the feed applies
        for _ in range(3):
            assert m.query("www.example.test").rcode() == 0
        assert m.query("mx1.example.test").rcode() == 3
        with pytest.raises(urllib.error.HTTPError) as e:  # metrics_allow = []: token only
            urllib.request.urlopen(url, timeout=3)
        assert e.value.code == 403
        e.value.close()

        def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return _scrape(url, "s3cret")

        coin = (("action", "NXDOMAIN"), ("category", "cryptominer"), ("zone", "coin.feeds.mamori."))
        blocks = (("action", "NXDOMAIN"), ("category", ""), ("zone", "block.rpz."))

        def both_logged() -> bool:  # the writer flushes on its own schedule
            s = scraped()
            return ("mamori_blocks_total", coin) in s and ("mamori_blocks_total", blocks) in s

        assert until(both_logged, 10)
        s = scraped()
        assert s[("mamori_queries_total", ())] >= 5
        assert s[("mamori_cache_hits_total", ())] >= 2
        assert s[("mamori_responses_total", (("rcode", "NOERROR"),))] >= 3
        assert s[("mamori_policy_zone_rules", (("zone", "block.rpz."),))] == 1
        assert s[("mamori_blocks_total", blocks)] == 1
        up = f"127.0.0.1:{upstream.port}"
        assert s[("mamori_upstream_up", (("upstream", up),))] == 1
        assert s[("mamori_upstream_latency_seconds_count", (("upstream", up),))] >= 1
        assert s[("mamori_feed_entries", (("feed", "coin"),))] == 1
        assert s[("mamori_feed_last_update_timestamp_seconds", (("feed", "coin"),))] > 0
        assert s[("mamori_events_dropped_total", ())] == 0
    finally:
        assert m.stop() == 0, m.stderr()
