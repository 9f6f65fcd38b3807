"""A worker that stops answering (stuck, stopped) is killed and replaced by the supervisor."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from mamori.control.supervisor import UNRESPONSIVE_AFTER
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _answered(port: int, n: int = 40) -> int:
    """Queries from *n* fresh source ports (spread over the workers): how many got answers."""
    q = dns.message.make_query("www.example.test", "A").to_wire()
    ok = 0
    for _ in range(n):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(q, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                ok += dns.message.from_wire(s.recv(4096)).rcode() == dns.rcode.NOERROR
    return ok


def test_a_stopped_worker_is_killed_and_replaced(tmp_path: Path, auth: AuthServer) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], workers=2).start()
    try:
        assert until(lambda: len(re.findall(r"worker \d started \(pid", m.stderr())) == 2, 10)
        pid = int(re.findall(r"worker 1 started \(pid (\d+)\)", m.stderr())[0])
        assert _answered(m.port) == 40
        os.kill(pid, signal.SIGSTOP)  # alive, but never answers again
        assert until(lambda: "unresponsive" in m.stderr(), UNRESPONSIVE_AFTER + 5)
        assert until(lambda: m.stderr().count("worker 1 started") == 2, 15)
        assert f"worker 1 (pid {pid}) killed by SIGKILL: restarting it" in m.stderr()
        assert _answered(m.port) == 40
    finally:
        assert m.stop() == 0
