"""The helper processes of ``mamori serve`` (the dnstap collector) come back after SIGKILL.

``mamori serve`` with ``[pdns] dnstap`` runs ``mamori pdns collect`` as a child;
killing that child with SIGKILL must bring a new one that listens again: at once
the first times, then after a growing delay (back-off). The supervisor alone is
then driven through 20 SIGKILLs of a real collector at random points (during its
start or while it listens), with short delays so the test stays short.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from mamori.control.children import Child, ChildSupervisor
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until
from tests.support.workers import children

pytestmark = pytest.mark.integration

KILLS = 20


def _listening(sock: Path) -> bool:
    """Does a process accept connections on the unix socket *sock*?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def _collector(pid: int) -> int | None:
    """The pid of the ``mamori pdns collect`` child of *pid*, if there is one."""
    for child in children(pid):
        try:
            if b"pdns\0collect" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        except OSError:
            continue
    return None


def test_serve_restarts_a_killed_dnstap_collector_with_back_off(tmp_path: Path) -> None:
    sock = tmp_path / "dnstap.sock"
    m = MamoriProcess(
        tmp_path, ["127.0.0.1:9"], extra=f'[pdns]\ndnstap = "unix:{sock}"\nflush_interval = 0.2\n'
    )
    m.start()
    assert m.proc is not None
    try:
        pids = []
        for kill in range(5):
            assert until(lambda: _collector(m.proc.pid) not in (None, *pids), 20), m.stderr()
            pid = _collector(m.proc.pid)
            assert pid is not None
            assert until(lambda: _listening(sock), 20), m.stderr()
            pids.append(pid)
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            assert until(lambda: _collector(m.proc.pid) not in (None, *pids), 20), m.stderr()
            waited = time.monotonic() - t0
            if kill < 3:
                assert f"pdns collect (pid {pid}) killed by SIGKILL: restarting it" in m.stderr()
            else:  # 4 and 5 restarts in the window: 1 s, then 2 s before the next start
                delay = 2.0 ** (kill - 3)
                assert f"pdns collect (pid {pid}) killed by SIGKILL: {kill + 1} restarts in 30s," \
                    f" next start in {delay:.1f}s" in m.stderr()  # fmt: skip
                assert waited >= delay
        assert until(lambda: _listening(sock), 20), m.stderr()
        assert m.query("example.test.", timeout=5) is not None  # the DNS service is undisturbed
    finally:
        assert m.stop() == 0
    assert _collector(m.proc.pid) is None


def test_supervisor_restarts_a_collector_killed_at_20_random_points(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sock = tmp_path / "dnstap.sock"
    conf = tmp_path / "m.toml"
    conf.write_text(
        f'[store]\npath = "{tmp_path}/m.db"\n[pdns]\ndnstap = "unix:{sock}"\nflush_interval = 0.2\n'
    )
    argv = [sys.executable, "-m", "mamori", "pdns", "collect", "--config", str(conf)]
    child = Child("pdns collect", argv)
    sup = ChildSupervisor([child], first_backoff=0.05, backoff_max=0.2)
    rng = random.Random(2019)
    caplog.set_level(logging.INFO, "mamori.supervisor")
    sup.start()
    killed: list[int] = []
    listening_when_killed = 0
    try:
        for _ in range(KILLS):
            assert until(lambda: child.pid not in (None, *killed), 20)
            pid = child.pid
            assert pid is not None
            time.sleep(rng.uniform(0.0, 0.7))  # during its start, or while it listens
            listening_when_killed += _listening(sock)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        assert until(lambda: child.pid not in (None, *killed), 20)
        assert until(lambda: _listening(sock), 20)
        assert child.restarts == KILLS
        assert child.backoff > 0  # 20 deaths in the window: restarts were delayed
    finally:
        sup.stop()
    assert child.proc is not None and child.proc.returncode is not None  # stopped with it
    assert 0 < listening_when_killed < KILLS  # kills hit both phases
    lines = [r.getMessage() for r in caplog.records]
    assert sum("killed by SIGKILL" in line for line in lines) == KILLS
