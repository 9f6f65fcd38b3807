"""dnstap: Debian's Unbound streams its resolutions to `mamori pdns collect` over Frame Streams."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.bind import Bind
from tests.support.unbound import Unbound
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _records(conf: Path, *args: str) -> list[dict[str, object]]:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "pdns", "query", "--config", str(conf), "-j", *args],
        capture_output=True,
        text=True,
    )
    return [json.loads(x) for x in r.stdout.splitlines()]


@contextlib.contextmanager
def collecting(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """`mamori pdns collect` on a unix socket: (config, socket); stopped by SIGTERM after."""
    sock = tmp_path / "dnstap.sock"
    conf = tmp_path / "m.toml"
    conf.write_text(
        '[upstream]\nservers = ["127.0.0.1:53"]\n'
        f'[store]\npath = "{tmp_path / "m.db"}"\n'
        f'[pdns]\ndnstap = "unix:{sock}"\nflush_interval = 0.2\n'
    )
    err = (tmp_path / "collect.stderr").open("wb")
    collector = subprocess.Popen(
        [sys.executable, "-m", "mamori", "pdns", "collect", "--config", str(conf)], stderr=err
    )
    try:
        assert until(sock.exists, 15), (tmp_path / "collect.stderr").read_text()
        yield conf, sock
    finally:
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(15) == 0
        err.close()


def _sensors(conf: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "mamori", "pdns", "stats", "--config", str(conf)],
        capture_output=True,
        text=True,
    ).stdout


def test_unbound_dnstap_reaches_the_store(tmp_path: Path, upstream: AuthServer) -> None:
    binary = require_binary("unbound")
    with collecting(tmp_path) as (conf, sock):
        ub = Unbound(binary, tmp_path / "unbound", upstream.port)
        ub.extra = (
            "dnstap:\n  dnstap-enable: yes\n"
            f'  dnstap-socket-path: "{sock}"\n'
            '  dnstap-send-identity: yes\n  dnstap-identity: "ub-test"\n'
            "  dnstap-log-resolver-response-messages: yes\n"
            "  dnstap-log-forwarder-response-messages: yes\n"
            "  dnstap-log-client-response-messages: yes\n"
        )
        ub.start()
        try:
            for name, rdtype in (("www.example.test", "A"), ("mail.example.test", "MX")):
                q = dns.message.make_query(name, rdtype)
                assert dns.query.udp(q, "127.0.0.1", port=ub.port, timeout=3).answer
            assert until(lambda: bool(_records(conf, "-r", "mail.example.test/MX")), 20)
            www = _records(conf, "-r", "www.example.test/A")
            assert sorted(r["rdata"][0] for r in www) == ["192.0.2.1", "192.0.2.2"]  # type: ignore[index]
        finally:
            ub.stop()
    assert "sensor dnstap:ub-test" in _sensors(conf)


def test_bind_dnstap_reaches_the_store(tmp_path: Path, upstream: AuthServer) -> None:
    """BIND 9 (Debian's, built with dnstap) forwarding through the fixture."""
    named = require_binary("named")
    with collecting(tmp_path) as (conf, sock):
        b = Bind(
            named,
            tmp_path / "bind",
            "",
            recursion=True,
            options=(
                f"forwarders {{ 127.0.0.1 port {upstream.port}; }}; forward only;"
                " dnstap { resolver response; forwarder response; client response; };"
                f' dnstap-output unix "{sock}"; dnstap-identity "bind-test";'
            ),
        )
        b.start()
        try:
            q = dns.message.make_query("mail.example.test", "MX")
            assert dns.query.udp(q, "127.0.0.1", port=b.port, timeout=3).answer
            assert until(lambda: bool(_records(conf, "-r", "mail.example.test/MX")), 20), b.log
        finally:
            b.stop()
    assert "sensor dnstap:bind-test" in _sensors(conf)
