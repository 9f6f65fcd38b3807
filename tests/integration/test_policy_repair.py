"""Compiled policy files lost or damaged under running workers; two services on one port.

Found by a fresh-eyes review: a restarted worker that could not map the policy
held its share of the clients without answering, forever, while /metrics said
it was up; a second `mamori serve` with workers shared the first one's port.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import REPO, MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until
from tests.support.workers import per_worker, scrape

pytestmark = pytest.mark.integration

RPZ = """$TTL 60
@ SOA localhost. root.localhost. 1 3600 600 86400 60
@ NS localhost.
blocked.example.test CNAME .
"""


@pytest.fixture
def auth() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def _blocked_everywhere(port: int, n: int = 40) -> int:
    """Queries for the listed name from *n* fresh source ports: how many got NXDOMAIN."""
    q = dns.message.make_query("blocked.example.test", "A").to_wire()
    ok = 0
    for _ in range(n):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.sendto(q, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                ok += dns.message.from_wire(s.recv(4096)).rcode() == dns.rcode.NXDOMAIN
    return ok


def _start(tmp_path: Path, auth: AuthServer, web_port: int = 0) -> MamoriProcess:
    (tmp_path / "local.rpz").write_text(RPZ)
    extra = f'[[rpz]]\nname = "local.rpz"\nfile = "{tmp_path / "local.rpz"}"\n'
    if web_port:
        extra += f'[web]\nenabled = true\nlisten = "127.0.0.1:{web_port}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{auth.port}"], extra=extra, workers=2).start()
    assert until(lambda: len(re.findall(r"worker \d started \(pid", m.stderr())) == 2, 10)
    return m


def _compiled(tmp_path: Path) -> Path:
    manifest = json.loads((tmp_path / "policy" / "manifest.json").read_text())
    return Path(manifest["local.rpz."]["file"])


def _worker_pid(m: MamoriProcess, n: int) -> int:
    return int(re.findall(rf"worker {n} started \(pid (\d+)\)", m.stderr())[-1])


def test_a_worker_that_cannot_map_the_policy_steps_aside_until_it_is_compiled_again(
    tmp_path: Path, auth: AuthServer
) -> None:
    web_port = free_port()
    m = _start(tmp_path, auth, web_port)
    try:
        assert _blocked_everywhere(m.port) == 40
        old = _compiled(tmp_path)
        old.unlink()  # mapped by the running workers: they keep serving it
        os.kill(_worker_pid(m, 1), signal.SIGKILL)  # its replacement cannot map it
        assert until(lambda: "cannot map policy version" in m.stderr(), 10)
        assert until(lambda: m.stderr().count("worker 1 started") == 2, 20), m.stderr()
        assert re.search(r"compiled file \S+ unusable .*: compiling again", m.stderr())
        assert _compiled(tmp_path) != old and _compiled(tmp_path).exists()
        assert _blocked_everywhere(m.port) == 40
        assert per_worker(scrape(web_port), "mamori_worker_up") == {"1": 1.0, "2": 1.0}
    finally:
        assert m.stop() == 0


def test_a_compiled_file_truncated_under_the_workers_is_compiled_again(
    tmp_path: Path, auth: AuthServer
) -> None:
    m = _start(tmp_path, auth)
    try:
        path = _compiled(tmp_path)
        os.truncate(path, 0)  # the workers' next look at it is a SIGBUS
        _blocked_everywhere(m.port, 10)
        assert until(lambda: "changed on disk" in m.stderr() or "cannot map" in m.stderr(), 15)
        assert until(lambda: _compiled(tmp_path) != path, 20), m.stderr()
        assert until(lambda: _blocked_everywhere(m.port) == 40, 20), m.stderr()
    finally:
        m.stop()


def test_a_second_service_with_workers_cannot_take_a_port_in_use(
    tmp_path: Path, auth: AuthServer
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = MamoriProcess(tmp_path / "a", [f"127.0.0.1:{auth.port}"], workers=2).start()
    try:
        second = MamoriProcess(tmp_path / "b", [f"127.0.0.1:{auth.port}"], workers=2)
        second.config.write_text(second.config.read_text().replace(str(second.port),
                                                                   str(first.port)))  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "mamori", "serve", "--config", str(second.config)],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert f"cannot listen on 127.0.0.1:{first.port}/udp: address already in use" in out.stderr
    finally:
        assert first.stop() == 0
