"""A policy file edited on disk is applied within [policy] watch_interval, as the docs
say (the exact timing is pinned with a virtual clock in tests/control/test_watch.py;
here a generous bound on a real process, polled, never a measured duration)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess

pytestmark = pytest.mark.integration

HEAD = "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n@ NS localhost.\n"
WATCH_INTERVAL = 1.0


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def test_edited_policy_file_is_applied_within_watch_interval(
    tmp_path: Path, auth: AuthServer
) -> None:
    zone = tmp_path / "local.rpz"
    zone.write_text(HEAD)
    extra = (
        f"[policy]\nwatch_interval = {WATCH_INTERVAL}\n"
        f'[[rpz]]\nname = "rpz.local"\nfile = "{zone}"\n'
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], extra=extra).start()
    try:
        assert m.query("www.example.test").rcode() == dns.rcode.NOERROR
        zone.write_text(HEAD + "www.example.test CNAME .\n")
        # Within watch_interval plus the compile; fail only after ten times that.
        deadline = time.monotonic() + 10 * WATCH_INTERVAL
        while m.query("www.example.test").rcode() != dns.rcode.NXDOMAIN:
            assert time.monotonic() < deadline, m.stderr()
            time.sleep(0.05)
        assert "policy zone file changed" in m.stderr()
    finally:
        assert m.stop() == 0, m.stderr()
