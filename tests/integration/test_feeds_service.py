"""Feeds end to end: fetched over HTTP (ETag/304), compiled, and enforced by `mamori serve`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.feedserver import FeedServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

COIN = Path(__file__).resolve().parents[3] / "shared/data/feeds/CoinBlockerLists"


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _update(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mamori", "feeds", "update", "--config", str(conf)],
        capture_output=True,
        text=True,
    )


def test_http_feed_with_etag_cache_and_fallback(tmp_path: Path) -> None:
    if not COIN.exists():
        pytest.skip("shared data not present")
    web = tmp_path / "web"
    web.mkdir()
    (web / "list.txt").write_bytes((COIN / "list.txt").read_bytes())
    srv = FeedServer(web)
    conf = tmp_path / "m.toml"
    conf.write_text(
        f'[upstream]\nservers = ["127.0.0.1:9"]\n[store]\npath = "{tmp_path}/m.db"\n'
        f'[[feed]]\nname = "coin"\nurl = "http://127.0.0.1:{srv.port}/list.txt"\n'
        'format = "domains"\ncategory = "cryptominer"\n'
    )
    try:
        first = _update(conf)
        assert first.returncode == 0, first.stderr
        assert "serial 1, changed (http 200)" in first.stdout
        second = _update(conf)
        assert "serial 1, unchanged (http 304 (unchanged))" in second.stdout
        assert srv.requests[-1] == ("/list.txt", 304)
    finally:
        srv.close()
    # The source is gone: the cached copy keeps the feed alive.
    third = _update(conf)
    assert third.returncode == 0 and "cached copy" in third.stdout
    listing = subprocess.run(
        [sys.executable, "-m", "mamori", "feeds", "list", "--config", str(conf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.startswith("coin [cryptominer, domains, enforced]") and "serial 1" in listing


def test_feed_is_enforced_and_a_garbage_update_keeps_the_last_good(
    tmp_path: Path, upstream: AuthServer
) -> None:
    if not COIN.exists():
        pytest.skip("shared data not present")
    feed = tmp_path / "coin-hosts"
    feed.write_bytes((COIN / "hosts").read_bytes())
    extra = (
        "[policy]\nwatch_interval = 0.2\n"
        f'[[feed]]\nname = "coin"\npath = "{feed}"\nformat = "hosts"\ncategory = "cryptominer"\n'
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()
    try:
        # Compiled at start (no copy yet), then loaded by the zone watcher.
        assert until(lambda: m.query("10k.suprnova.cc").rcode() == dns.rcode.NXDOMAIN, 30), (
            m.stderr()
        )
        assert m.query("www.example.test").rcode() == dns.rcode.NOERROR
        line = (
            "rpz QNAME NXDOMAIN rewrite 10k.suprnova.cc/A/IN via 10k.suprnova.cc.coin.feeds.mamori"
        )
        assert until(lambda: line in m.stderr())
        # A broken source: refused whole, the compiled zone stays.
        feed.write_text("garbage line one\n<html>\nnot a hosts file at all\n")
        result = _update(m.config)
        assert result.returncode == 1 and "refused, last good version kept" in result.stderr
        assert m.query("10k.suprnova.cc").rcode() == dns.rcode.NXDOMAIN
    finally:
        assert m.stop() == 0, m.stderr()


def test_unreachable_feeds_are_skipped_with_one_warning(
    tmp_path: Path, upstream: AuthServer
) -> None:
    """As `make run` offline: the feeds cannot be fetched, the firewall serves anyway."""
    closed = free_port()  # nothing listens there: connection refused, like no internet
    extra = "".join(
        f'[[feed]]\nname = "{n}"\nurl = "http://127.0.0.1:{closed}/{n}.txt"\nformat = "hosts"\n'
        for n in ("one", "two")
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra).start()
    try:
        assert until(lambda: "not reachable" in m.stderr(), 20)
        assert m.query("www.example.test").rcode() == dns.rcode.NOERROR
        lines = [ln for ln in m.stderr().splitlines() if "not reachable" in ln]
        assert len(lines) == 1 and "2 feed(s)" in lines[0] and "WARNING" in lines[0], lines
        assert "ERROR" not in m.stderr()
    finally:
        assert m.stop() == 0, m.stderr()
    r = _update(m.config)
    assert r.returncode == 1 and r.stderr.count("not reachable, skipped") == 2
