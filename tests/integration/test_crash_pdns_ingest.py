"""Crash safety of ``mamori pdns ingest``: SIGKILL at random points, re-run, nothing twice.

The real CLI runs as a subprocess over generated captures and is killed with
SIGKILL after a seeded random delay, 20 times; each re-run resumes where the
last committed transaction left off. The store's tuples must then equal those
of one clean ingest, and ingesting the finished files once more must change
nothing (counts identical).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.rrset
import pytest

from mamori.store.pdns_schema import connect_functions
from tests.support import pcapgen

pytestmark = pytest.mark.integration

KILLS = 20
NAMES = 1500  # distinct names per capture
PER_FILE = 12_000  # responses per capture
COMMIT_EVERY = 1000


def _captures(tmp: Path) -> list[Path]:
    """Two captures of DNS responses (the second shares half its names with the first)."""
    out = []
    for f in range(2):
        wires = []
        for i in range(NAMES):
            name = f"host{i + f * NAMES // 2}.crash.example."
            q = dns.message.make_query(name, "A")
            r = dns.message.make_response(q)
            r.answer.append(
                dns.rrset.from_text(name, 60, "IN", "A", f"10.{f}.{i // 250}.{i % 250}")
            )
            wires.append(r.to_wire())
        frames = []
        for k in range(PER_FILE):
            payload = wires[(k * 7) % NAMES]
            pkt = pcapgen.udp("192.0.2.53", 53, "192.0.2.10", 30000 + k % 20000, payload)
            frames.append((1_700_000_000.0 + f * 50_000 + k, pcapgen.ether(pkt)))
        path = tmp / f"cap{f}.pcap"
        pcapgen.write_pcap(path, frames)
        out.append(path)
    return out


def _config(tmp: Path, name: str) -> Path:
    conf = tmp / f"{name}.toml"
    conf.write_text(f'[store]\npath = "{tmp}/{name}.db"\n[pdns]\npath = "{tmp}/{name}-pdns.db"\n')
    return conf


def _ingest(conf: Path, caps: list[Path]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "mamori", "pdns", "ingest", "--config", str(conf),
           "--sensor", "crash", "--commit-every", str(COMMIT_EVERY), *map(str, caps)]  # fmt: skip
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "TERM": "dumb"}
    )


def _tuples(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        connect_functions(c)  # the rrset view shows stored addresses as text
        return c.execute(
            "SELECT rrname, rrtype, rdata, count, time_first, time_last FROM rrset ORDER BY 1, 2, 3"
        ).fetchall()


def _committed(db: Path) -> int:
    """DNS messages committed so far over all captures (the ingest's own progress table)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=10) as c:
        try:
            row = c.execute("SELECT coalesce(sum(messages), 0) FROM pdns_ingest").fetchone()
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0
    return int(row[0])


def _wait(cond: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    """Poll *cond* until it holds, *proc* exits or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if proc.poll() is not None:
            return cond()
        time.sleep(0.005)
    return False


def _run(conf: Path, caps: list[Path]) -> str:
    proc = _ingest(conf, caps)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def test_killed_ingest_reruns_count_nothing_twice(tmp_path: Path) -> None:
    caps = _captures(tmp_path)
    clean_conf = _config(tmp_path, "clean")
    _run(clean_conf, caps)
    clean = _tuples(tmp_path / "clean-pdns.db")
    assert len(clean) == NAMES * 2 and sum(int(str(r[3])) for r in clean) == 2 * PER_FILE

    conf = _config(tmp_path, "crash")
    db = tmp_path / "crash-pdns.db"
    rng = random.Random(19)
    # 20 kill points spread over the work: run i is killed a random moment after the
    # store has committed target i (a multiple of --commit-every) messages
    targets = sorted(rng.sample(range(1, 2 * PER_FILE // COMMIT_EVERY), KILLS))
    killed = 0
    for target in targets:
        proc = _ingest(conf, caps)
        reached = _wait(lambda t=target: _committed(db) >= t * COMMIT_EVERY, proc)
        assert reached, f"run stopped before {target * COMMIT_EVERY} messages were committed"
        time.sleep(rng.uniform(0.0, 0.05))  # mid-batch, or inside the next commit
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
    assert killed >= KILLS - 2, f"only {killed} of {KILLS} runs were still working when killed"
    _run(conf, caps)  # the last re-run completes
    assert _tuples(tmp_path / "crash-pdns.db") == clean

    # Finished files again: nothing changes, and the summary says why.
    again = _run(conf, caps)
    assert "2 capture(s) already ingested" in again, again
    assert _tuples(tmp_path / "crash-pdns.db") == clean
