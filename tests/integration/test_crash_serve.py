"""Crash safety of ``mamori serve``: SIGKILL at random points, 20 times, then restart.

Each run starts while a feed's content has changed on a local HTTP server (so
the run fetches it, rewrites its zone and a dataset's, compiles the policy and
publishes the zones for transfer) and queries flow from a client thread; the
whole process tree is killed with SIGKILL after a seeded random delay (during
the start, the feed update or the serving). The next run is the restart and
checks what the killed one left:

- every file the service wrote parses (JSON state, zone files, feed caches) and
  no serial went backwards (zone files, published serials);
- the service answers, with the policy of the last good feed version;
- every query-log row read as committed before the kill is still there, no row
  is written twice, the database passes ``PRAGMA integrity_check``;
- the restart counts the events the killed run lost, and never more than were
  really lost (answered queries minus rows written).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import dns.zone
import pytest

from mamori.xfr.zonefile import read_journal
from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.bind import Bind
from tests.support.feedserver import FeedServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until
from tests.support.workers import children

pytestmark = pytest.mark.integration

KILLS = 20
BLOCKED = "www.example.test."  # in every version of the feed (the upstream answers it)
IXFR_BLOCKED = "alias.example.test"  # in every version of the transferred policy zone


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


class Primary:
    """BIND as the primary of policy zone rpz.test: each ``bump`` is a new serial that
    reaches mamori as NOTIFY + IXFR (or by its refresh at start)."""

    def __init__(self, tmp: Path, notify_port: int) -> None:
        self.zone = tmp / "bind" / "rpz.test.zone"
        self.serial = 1
        self.zone.parent.mkdir()
        self._write()
        zones = (
            'zone "rpz.test" { type primary; file "DIR/rpz.test.zone"; allow-transfer { any; };'
            " ixfr-from-differences yes; max-ixfr-ratio unlimited; notify explicit;"
            f" also-notify {{ 127.0.0.1 port {notify_port}; }}; }};\n"
        )
        self.bind = Bind(require_binary("named"), self.zone.parent, zones).start("rpz.test")

    def _write(self) -> None:
        # one rule changes per serial: BIND keeps many small deltas in its journal
        # (bounded to twice the zone's size), so a secondary a few serials behind gets IXFR
        rules = [IXFR_BLOCKED + " CNAME .", f"s{self.serial}.ixfr.example CNAME ."] + [
            f"filler-{k}.ixfr.example CNAME ." for k in range(300)
        ]
        self.zone.write_text(
            f"$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. {self.serial} 1 1 600 30\n"
            "@ NS localhost.\n" + "\n".join(rules) + "\n"
        )
        # BIND looks at the file's time: one second later each time, whatever the clock
        os.utime(self.zone, (time.time() + self.serial, time.time() + self.serial))

    def bump(self) -> None:
        self.serial += 1
        self._write()
        self.bind.reload()


def _feed(version: int) -> bytes:
    names = [BLOCKED.rstrip(".")] + [f"v{version}-{k}.bad.test" for k in range(300)]
    return ("\n".join(names) + "\n").encode()


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def _kill_tree(proc: MamoriProcess) -> None:
    """SIGKILL the service and every process it started (as the OOM killer or a
    cgroup kill would), then reap it."""
    assert proc.proc is not None
    os.kill(proc.proc.pid, signal.SIGSTOP)  # it starts no other process meanwhile
    for pid in _tree(proc.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.proc.wait(10)
    proc._stderr.close()


def _serials(store: Path) -> dict[str, int]:
    """Every zone file's SOA serial and every published serial, parsing every file the
    service keeps (a half-written one fails here)."""
    out: dict[str, int] = {}
    for path in sorted(store.rglob("*")):
        if path.parts[len(store.parts)] in ("bind", "web"):
            continue  # the test's primary and feed host
        if not path.is_file() or path.name.startswith("."):
            continue  # .NAME.*.tmp: a temporary file a kill left behind (never read)
        if path.suffix in (".json", ".meta"):
            doc = json.loads(path.read_text())
            if path.name.endswith(".published.json"):
                out[path.name] = int(doc["serial"])
        elif path.suffix == ".zone":
            zone = dns.zone.from_file(str(path), relativize=False, check_origin=False)
            out[path.name] = int(zone.get_soa().serial)
        elif path.suffix == ".jnl":  # IXFR journal: the serial its complete batches reach
            zone_file = path.with_suffix("")
            serial = int(
                dns.zone.from_file(str(zone_file), relativize=False, check_origin=False)
                .get_soa()
                .serial
            )
            for d in read_journal(zone_file):
                if d.old == serial:
                    serial = d.new
            out[path.name] = serial
        elif path.suffix in (".sqlite", ".db"):  # feed provenance, audit, query log
            _integrity(path)
        elif path.suffix == ".entries":
            lines = path.read_text().splitlines()
            assert lines and lines[0].startswith("# feed "), path
            assert all(len(line.split("\t")) == 2 for line in lines[1:]), path
    return out


def _integrity(path: Path) -> None:
    """``PRAGMA integrity_check`` passes. (SQLite 3.40 reports "NULL value in T.C" for
    WITHOUT ROWID tables whose key columns come after others even on a fresh file: such
    a line counts only if a query finds the NULL.)"""
    with sqlite3.connect(path, timeout=10) as c:
        problems = [r for (r,) in c.execute("PRAGMA integrity_check") if r != "ok"]
        for line in list(problems):
            if line.startswith("NULL value in "):
                table, column = line.removeprefix("NULL value in ").split(".")
                (n,) = c.execute(f"SELECT count(*) FROM {table} WHERE {column} IS NULL").fetchone()
                if n == 0:
                    problems.remove(line)
    assert not problems, (path, problems[:5])


class Load:
    """Queries for unique names from one client, until stopped (bounded in count)."""

    def __init__(self, port: int, tag: str) -> None:
        self.port, self.tag = port, tag
        self.answered = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            for i in range(20_000):
                if self._stop.is_set():
                    return
                q = dns.message.make_query(f"q{i}.{self.tag}.example.test.", "A")
                try:
                    s.sendto(q.to_wire(), ("127.0.0.1", self.port))
                    while dns.message.from_wire(s.recv(65535)).id != q.id:
                        pass
                except (TimeoutError, ConnectionRefusedError):
                    return  # the service was killed
                self.answered += 1

    def stop(self) -> int:
        """Stop; how many queries were answered."""
        self._stop.set()
        self.thread.join(5)
        return self.answered


def _rows(db: Path) -> dict[int, str]:
    with sqlite3.connect(db, timeout=10) as c:
        return dict(c.execute("SELECT id, qname FROM query_log"))


def test_serve_killed_at_random_points_keeps_files_serials_and_committed_rows(
    tmp_path: Path, upstream: AuthServer
) -> None:
    web = tmp_path / "web"
    web.mkdir()
    srv = FeedServer(web)
    feed = (
        f'[[feed]]\nname = "crashfeed"\nurl = "http://127.0.0.1:{srv.port}/list.txt"\n'
        'format = "domains"\ncategory = "malware"\npublish = true\n'
        '[[dataset]]\nname = "crashset"\nfeeds = ["crashfeed"]\npublish = true\n'
        '[publish]\nallow = ["127.0.0.1/32"]\n'
        # the resolver's passive DNS sensor, writing once a second
        "[pdns]\nenabled = true\nflush_interval = 1.0\n"
    )
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra=feed)
    primary = Primary(tmp_path, m.port)
    m.config.write_text(
        m.config.read_text()
        + f'[[rpz]]\nname = "rpz.test"\nprimary = "127.0.0.1:{primary.bind.port}"\n'
    )
    # commits once a second: a kill finds up to a second of events in memory
    m.config.write_text(
        m.config.read_text().replace("flush_interval = 0.05", "flush_interval = 1.0")
    )
    rng = random.Random(1919)
    serials: dict[str, int] = {}
    committed: dict[int, str] = {}  # rows read from the database before a kill
    # (pid, last row id before it, queries answered, of which by the load)
    runs: list[tuple[int, int, int, int]] = []
    kill_points: list[tuple[float, bool]] = []  # (seconds after the start, was serving)
    answered = 0  # queries this run answered (checks and load)

    def ask(name: str, rdtype: str = "A") -> int:
        nonlocal answered
        try:
            rcode = m.query(name, rdtype, timeout=1.0).rcode()
        except dns.exception.Timeout:
            return -1
        answered += 1
        return int(rcode)

    try:
        for it in range(KILLS + 1):
            (tmp_path / "web" / "list.txt").write_bytes(_feed(it))
            primary.bump()  # transferred at start (the refresh), or while it starts
            zone = tmp_path / "feeds" / "crashfeed.rpz"
            if zone.exists():  # due now: this start fetches the changed feed
                os.utime(zone, (0, 0))
            first_id = max(_rows(m.db), default=0) if m.db.exists() else 0
            answered = 0
            started = time.monotonic()
            # odd runs: a random point from the start (fetch, compile, publish, or serving);
            # even runs: a random point once it serves (load, IXFR, commits)
            kill_at = started + rng.uniform(0.3, 3.0) if it % 2 and it < KILLS else started + 60
            m.start(wait=False)
            assert m.proc is not None
            serving = _ready(m, kill_at)
            if serving:  # ---- a restart: what the killed runs left
                _check_files(m.db, committed)
                now = _serials(tmp_path)
                for name, serial in serials.items():
                    assert now.get(name, serial) >= serial, (name, serial, now.get(name))
                serials.update(now)
                # the service answers, with the last good version of the feed in force
                assert until(lambda: ask(BLOCKED) == dns.rcode.NXDOMAIN, 20), m.stderr()[-3000:]
                assert ask("mail.example.test.", "MX") == dns.rcode.NOERROR
                assert ask(IXFR_BLOCKED + ".") == dns.rcode.NXDOMAIN  # the transferred zone
            if it % 2 == 0:
                kill_at = time.monotonic() + rng.uniform(0.1, 2.0)
            if it == KILLS:
                runs.append((0, first_id, 0, 0))  # where the rows of the killed runs end
                break
            load = Load(m.port, f"run{it}") if serving else None
            time.sleep(max(0.0, rng.uniform(time.monotonic(), kill_at) - time.monotonic()))
            if serving:
                primary.bump()  # NOTIFY + IXFR while it serves
            if m.db.exists():
                committed = _rows(m.db)  # read as committed: must survive the kill
            time.sleep(max(0.0, kill_at - time.monotonic()))
            _kill_tree(m)
            by_load = load.stop() if load is not None else 0
            answered += by_load
            kill_points.append((round(kill_at - started, 2), serving))
            runs.append((m.proc.pid, first_id, answered, by_load))
        m.stop()
        _check_files(m.db, committed)
        _check_lost_counts(m.db, runs)
        _check_tap_counts(tmp_path / "pdns.sqlite", runs)
    finally:
        m.stop()
        srv.close()
        primary.bind.stop()
    assert len(kill_points) == KILLS
    print("kill points (s after start, serving):", kill_points)
    assert sum(serving for _, serving in kill_points) >= KILLS // 2, kill_points  # even runs


def _check_files(db: Path, committed: dict[int, str]) -> None:
    with sqlite3.connect(db, timeout=10) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = _rows(db)
    gone = {i: q for i, q in committed.items() if rows.get(i) != q}
    assert not gone, f"committed rows lost: {list(gone.items())[:5]}"
    load_rows = [q for q in rows.values() if q.startswith("q")]
    assert len(load_rows) == len(set(load_rows)), "a query logged twice"


def _check_lost_counts(db: Path, runs: list[tuple[int, int, int, int]]) -> None:
    """Each killed run's loss as counted by the next writer run is a lower bound of what
    it really lost (queries it answered, +1 in flight, minus the rows it wrote)."""
    with sqlite3.connect(db, timeout=10) as c:
        rows = c.execute(
            "SELECT run, pid, clean, lost_before FROM writer_runs ORDER BY run"
        ).fetchall()
        ids = [i for (i,) in c.execute("SELECT id FROM query_log ORDER BY id")]
    assert rows[-1][2] == 1, "the last run stopped cleanly and says so"
    by_pid = {pid: k for k, (_run, pid, _clean, _lb) in enumerate(rows)}
    bounds = [first for _pid, first, _n, _l in runs[1:]]
    checked = total = 0
    for (pid, first, answered, _load), upto in zip(runs[:-1], bounds, strict=True):
        k = by_pid.get(pid)
        if k is None:
            continue  # killed before its writer started: nothing taken in, nothing lost
        written = sum(first < i <= upto for i in ids)
        counted = rows[k + 1][3]
        assert rows[k][2] == 0, "a killed run is never marked clean"
        assert 0 <= counted <= answered + 1 - written, (pid, counted, answered, written)
        checked += 1
        total += counted
    assert checked >= KILLS // 2
    assert total > 0, "no kill found events waiting in memory: nothing was counted"


def _check_tap_counts(db: Path, runs: list[tuple[int, int, int, int]]) -> None:
    """The passive DNS tap's count of what a killed run lost is a lower bound too: each
    query of the load (a unique name: one upstream NXDOMAIN answer) answered and not in
    the store was lost (+2: one in flight, one check query's upstream answer)."""
    with sqlite3.connect(db, timeout=10) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = c.execute(
            "SELECT run, pid, clean, lost_before FROM tap_runs ORDER BY run"
        ).fetchall()
        nx = [n for (n,) in c.execute("SELECT rrname FROM nxdomain WHERE rrname LIKE 'q%'")]
    assert rows[-1][2] == 1, "the last run stopped cleanly and says so"
    by_pid = {pid: k for k, (_run, pid, _clean, _lb) in enumerate(rows)}
    checked = total = 0
    for it, (pid, _first, _answered, by_load) in enumerate(runs[:-1]):
        k = by_pid.get(pid)
        if k is None:
            continue
        stored = sum(f".run{it}." in n for n in nx)
        counted = rows[k + 1][3]
        assert rows[k][2] == 0, "a killed run is never marked clean"
        assert 0 <= counted <= by_load + 2 - stored, (pid, counted, by_load, stored)
        checked += 1
        total += counted
    assert checked >= KILLS // 2
    assert total > 0, "no kill found answers waiting in memory: nothing was counted"


def _ready(m: MamoriProcess, deadline: float) -> bool:
    """Wait for "serving DNS" until *deadline* (monotonic); whether it came."""
    while time.monotonic() < deadline:
        if "serving DNS" in m.stderr():
            return True
        time.sleep(0.02)
    return False
