"""A published zone whose serial wrapped (RFC 1982) while mamori was stopped: after the
restart mamori serves the new serial and content, and Debian's BIND 9 as secondary
follows it (issue 13, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import require_binary
from tests.support.bind import Bind
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

BEFORE, AFTER = 4_000_000_000, 1_158_658_354  # AFTER is 1453625650 steps ahead


def _rpz(serial: int, rules: str) -> str:
    return (
        "$TTL 60\n"
        f"@ SOA ns.rpz.test. hostmaster.rpz.test. {serial} 3600 60 86400 30\n"
        "@ NS localhost.\n" + rules
    )


def _has(port: int, owner: str) -> bool:
    """*owner* exists in BIND's copy of the zone (an authoritative CNAME answer)."""
    q = dns.message.make_query(f"{owner}.rpz.test.", "CNAME")
    r = dns.query.udp(q, "127.0.0.1", port=port, timeout=3)
    return r.rcode() == dns.rcode.NOERROR and bool(r.answer)


def test_bind_secondary_follows_a_serial_that_wrapped_while_mamori_was_stopped(
    tmp_path: Path,
) -> None:
    named = require_binary("named")
    zone = tmp_path / "rpz.test.zone"
    zone.write_text(_rpz(BEFORE, "old.example CNAME .\n"))
    d = tmp_path / "bind"
    b = Bind(named, d, "")
    extra = (
        f'[publish]\nallow = ["127.0.0.1/32"]\nnotify = ["127.0.0.1:{b.port}"]\n'
        f'[[rpz]]\nname = "rpz.test"\nfile = "{zone}"\npublish = true\n'
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{free_port()}"], extra=extra)
    b.zones = (
        f'zone "rpz.test" {{ type secondary; file "{d}/rpz.test.db";'
        f" primaries {{ 127.0.0.1 port {m.port}; }}; }};\n"
    )
    m.start()
    try:
        b.start()
        try:
            assert until(lambda: b.serial("rpz.test") == BEFORE), b.log
            assert _has(b.port, "old.example")
            assert m.stop() == 0, m.stderr()
            # While mamori is stopped the zone's serial wraps, with new content.
            zone.write_text(_rpz(AFTER, "new.example CNAME .\n"))
            m.start()
            published = json.loads((tmp_path / "zones" / "rpz.test.published.json").read_text())
            assert published["serial"] == AFTER, m.stderr()
            served = dns.query.udp(
                dns.message.make_query("rpz.test.", "SOA"), "127.0.0.1", port=m.port, timeout=3
            )
            assert served.answer[0][0].serial == AFTER
            # The restart NOTIFYs the secondary; BIND sees AFTER as newer and transfers.
            assert until(lambda: b.serial("rpz.test") == AFTER), b.log + m.stderr()
            assert _has(b.port, "new.example") and not _has(b.port, "old.example")
            assert "Transfer status: success" in b.log
        finally:
            b.stop()
    finally:
        assert m.stop() == 0, m.stderr()
