"""ClickHouse away, killed, or answering after the fact: nothing lost, nothing counted twice.

Each test runs its own Debian clickhouse-server (it is killed); batches that cannot be
sent wait in the spool on disk and go out in order when the server is back.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_base import Tuples
from mamori.store.pdns_clickhouse import PdnsClickHouse
from mamori.store.pdns_keys import net_range
from mamori.store.pdns_spool import Spool
from tests.support import clickhouse
from tests.support.wait import until

pytestmark = pytest.mark.skipif(clickhouse.BINARY is None, reason=clickhouse.MISSING)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[clickhouse.ClickHouse]:
    ch = clickhouse.ClickHouse(tmp_path / "ch").start()
    yield ch
    ch.stop()


def _store(ch: clickhouse.ClickHouse, tmp: Path, limit: int = 1 << 30) -> PdnsClickHouse:
    conn = DriverConn(parse_clickhouse_url(ch.url.rsplit("/", 1)[0] + "/faults"), timeout=2.0)
    return PdnsClickHouse(conn, Spool(tmp / "spool", limit))


def _batches(n: int, size: int, seed: int = 7) -> list[Tuples]:
    rng = random.Random(seed)
    out = []
    for b in range(n):
        t: Tuples = {}
        for _ in range(size):
            i = rng.randrange(5000)  # keys repeat across batches: counts must add up
            when = 1_700_000_000 + b * 60 + rng.randrange(60)
            key = (f"h{i}.zone{i % 37}.example.", 1, f"10.{i % 250}.{i // 250}.1", "")
            old = t.get(key)
            t[key] = [when, when, 1] if old is None else [min(old[0], when),
                                                         max(old[1], when), old[2] + 1]  # fmt: skip
        out.append(t)
    return out


def _expected(batches: list[Tuples]) -> dict[tuple[str, int, str, str], tuple[int, int, int]]:
    agg: dict[tuple[str, int, str, str], tuple[int, int, int]] = {}
    for b in batches:
        for k, (f, la, c) in b.items():
            old = agg.get(k)
            agg[k] = (f, la, c) if old is None else (min(old[0], f), max(old[1], la), old[2] + c)
    return agg


def _contents(store: PdnsClickHouse) -> dict[tuple[str, int, str, str], tuple[int, int, int]]:
    return {
        (r.rrname, r.rrtype, r.rdata, r.bailiwick): (r.time_first, r.time_last, r.count)
        for r in store.export_records()
    }


def test_sigkill_during_ingest_then_restart_gives_the_counts_of_a_run_without_fault(
    server: clickhouse.ClickHouse, tmp_path: Path
) -> None:
    batches = _batches(30, 600)
    store = _store(server, tmp_path)
    sent = 0
    killed = threading.Event()

    def killer() -> None:  # SIGKILL while INSERTs are in flight
        assert until(lambda: sent >= 8, 60)
        server.kill()
        killed.set()

    t = threading.Thread(target=killer)
    t.start()
    for i, b in enumerate(batches):
        store.write(b, sensors={"s": (sum(v[2] for v in b.values()), 1)})
        sent = i + 1
        if i == 20:
            assert killed.wait(60)
            assert len(store.spool) > 0  # what the dead server could not take waits on disk
            server.start()
    t.join()
    assert until(lambda: store.drain(force=True) == 0, 30)
    want = _expected(batches)
    assert _contents(store) == want
    assert store.sensors() == [("s", sum(c for _f, _l, c in want.values()), 1)]
    store.close()


def test_a_batch_sent_twice_is_counted_once(server: clickhouse.ClickHouse, tmp_path: Path) -> None:
    """An INSERT that succeeded but whose reply was lost is kept and sent again."""
    store = _store(server, tmp_path)
    key = ("www.example.com.", 1, "192.0.2.1", "")
    batch: dict[str, Any] = {
        "id": "0f" * 16,
        "created": 1,
        "tuples": [[*key, 10, 20, 3]],
        "nx": [],
        "sensors": [["s", 3, 20]],
        "progress": None,
        "mark": None,
    }
    assert store.spool is not None
    assert store.spool.append(batch, 1) and store.spool.append(batch, 1)
    assert store.drain(force=True) == 0
    assert store.spool.append(batch, 1)  # and once more, later
    assert store.drain(force=True) == 0
    (rec,) = store.rrset("www.example.com.")
    assert (rec.time_first, rec.time_last, rec.count) == (10, 20, 3)
    assert store.sensors() == [("s", 3, 20)]
    lo, hi = net_range("192.0.2.1")
    assert store.rdata_ip(lo, hi)[0].count == 3
    store.close()


def test_a_full_spool_drops_and_counts_and_writes_never_block(
    server: clickhouse.ClickHouse, tmp_path: Path
) -> None:
    store = _store(server, tmp_path, limit=20_000)
    server.kill()
    for b in _batches(10, 500, seed=3):
        store.write(b)  # returns: the batch is kept or dropped, never raised
    assert store.spool is not None
    assert store.spool.dropped > 0 and store.spool.dropped_items > 0
    assert 0 < store.spool.bytes <= 20_000
    kept = len(store.spool)
    server.start()
    assert until(lambda: store.drain(force=True) == 0, 30)
    assert store.stats()[0] > 0 and kept + store.spool.dropped == 10
    store.close()


def test_one_process_at_a_time_sends_a_shared_spool(
    server: clickhouse.ClickHouse, tmp_path: Path
) -> None:
    """``mamori serve`` and ``mamori pdns ingest`` keep batches in one spool: while one
    holds the spool's lock the other sends nothing (no batch in flight twice)."""
    a, b = _store(server, tmp_path), _store(server, tmp_path)
    assert a.spool is not None and b.spool is not None
    server.kill()
    for batch in _batches(3, 50, seed=5):
        a.write(batch)
    assert len(b.spool) == 3  # b sees a's kept batches
    server.start()
    with a.spool.sending() as mine:
        assert mine
        assert b.drain(force=True) == 3  # locked out: nothing sent
    assert b.drain(force=True) == 0
    assert _contents(b) == _expected(_batches(3, 50, seed=5))
    a.close()
    b.close()
