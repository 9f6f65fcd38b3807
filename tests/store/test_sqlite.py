from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from mamori.control.writer import EventWriter, queue_source
from mamori.errors import StoreError
from mamori.resolver.events import EventQueue
from mamori.resolver.query import Outcome
from mamori.store.sqlite import SCHEMA_VERSION, SQLiteStore

KEY = b"\x03www\x07example\x00\x00\x01\x00\x01\x00"


def test_writer_batches_events_into_wal_sqlite(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    q = EventQueue(100)
    w = EventWriter([queue_source(q)], store, 0.01, 7)
    w.start()
    for i in range(10):
        q.put(
            (
                time.time(),
                f"192.0.2.{i}",
                KEY,
                0,
                "A 192.0.2.1",
                5,
                "127.0.0.1:53",
                Outcome.RESOLVED,
                "",
                i % 2 == 1,
                None,
                "",
            )
        )
    w.stop()
    db = sqlite3.connect(tmp_path / "q.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = db.execute(
        "SELECT client, qname, qtype, transport FROM query_log ORDER BY id"
    ).fetchall()
    assert len(rows) == 10 and w.written == 10
    assert rows[0] == ("192.0.2.0", "www.example.", 1, "udp") and rows[1][3] == "tcp"
    store.close()


def test_retention_prunes_old_rows(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    now = time.time()
    old = (
        now - 8 * 86400,
        "192.0.2.1",
        "old.example.",
        1,
        0,
        "",
        0,
        "",
        False,
        "udp",
        "",
        "",
        "",
        "",
        "resolved",
        "",
        "",
        "",
    )
    new = (now - 60, "192.0.2.1", "new.example.", 1, 0, "", 0, "", False, "udp", "", "", "", "",
           "resolved", "", "", "")  # fmt: skip
    store.write_queries([old, new])
    w = EventWriter([], store, 0.01, retention_days=7)
    w._maybe_prune()
    names = [r[0] for r in store.db.execute("SELECT qname FROM query_log")]
    assert names == ["new.example."]
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "q.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(tmp_path / "q.db")


def test_unwritable_store_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open store"):
        SQLiteStore(blocker / "sub" / "q.db")


def test_policy_hit_counters_add_up_across_batches(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    q = EventQueue(100)
    w = EventWriter([queue_source(q)], store, 0.01, 7)
    w.start()
    hit = ("rpz.local.", "bad.test.rpz.local", "QNAME", "NXDOMAIN", False)
    for i in range(5):
        q.put(
            (
                1000.0 + i,
                "192.0.2.1",
                KEY,
                3,
                "",
                0,
                "",
                Outcome.BLOCKED,
                "nxdomain",
                False,
                hit,
                "",
            )
        )
        time.sleep(0.03)  # several batches
    q.put((2000.0, "192.0.2.1", KEY, 0, "", 0, "", Outcome.CACHED, "", False, None, ""))
    w.stop()
    assert store.policy_hits() == [("rpz.local.", "QNAME", "NXDOMAIN", 5, 1000.0, 1004.0)]
    assert w.zone_hits == {"rpz.local.": 5}
    store.close()


def test_hourly_counts_follow_the_query_log(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    row = (0.0, "192.0.2.1", "a.example.", 1, 0, "", 0, "", False, "udp", "", "", "", "",
           "resolved", "", "", "")  # fmt: skip
    blocked = (0.0, "192.0.2.1", "b.example.", 1, 3, "", 0, "", False, "udp",
               "z.rpz.", "b.example.z.rpz", "QNAME", "NXDOMAIN", "blocked", "nxdomain",
               "", "")  # fmt: skip
    allowed = (0.0, "192.0.2.1", "c.example.", 1, 0, "", 0, "", True, "udp",
               "z.rpz.", "c.example.z.rpz", "QNAME", "PASSTHRU", "cached", "", "", "")  # fmt: skip
    store.write_queries([(7200.5, *row[1:]), (7300.0, *blocked[1:]), (10900.0, *row[1:])])
    store.write_queries([(7201.0, *blocked[1:]), (7202.0, *allowed[1:])])
    counts = store.db.execute("SELECT * FROM query_counts ORDER BY hour").fetchall()
    assert counts == [(7200, 4, 2), (10800, 1, 0)], "a PASSTHRU (allow) hit is not a block"
    store.prune_queries(10800.0)
    assert store.db.execute("SELECT * FROM query_counts").fetchall() == [(10800, 1, 0)]
    store.close()


_AGG = ("SELECT cast(ts / 3600 AS INTEGER) * 3600, policy_zone, qname, count(*) FROM query_log"
        " WHERE policy_zone != '' AND outcome IN ('blocked', 'dropped') GROUP BY 1, 2, 3"
        " ORDER BY 1, 2, 3")  # fmt: skip
_AGG_CLIENTS = ("SELECT cast(ts / 3600 AS INTEGER) * 3600, policy_zone, client, client_group,"
                " count(*), max(ts) FROM query_log WHERE policy_zone != ''"
                " AND outcome IN ('blocked', 'dropped') GROUP BY 1, 2, 3, 4"
                " ORDER BY 1, 2, 3, 4")  # fmt: skip


def _blocked_rows(n: int) -> list[tuple[object, ...]]:
    """*n* rows over 5 hours, 3 zones, 7 names, 4 clients in 2 groups; some not blocks."""
    out = []
    for i in range(n):
        zone = ("", "a.rpz.", "b.rpz.", "c.rpz.")[i % 4]
        outcome = ("resolved", "blocked", "dropped", "cached")[i % 3 if zone else 0]
        out.append((3600.0 * (i % 5) + i % 3600, f"192.0.2.{i % 4}", f"n{i % 7}.test.", 1, 3,
                    "", 0, "", False, "udp", zone, "", "QNAME", "NXDOMAIN", outcome, "",
                    ("kids", "")[i % 4 % 2], ""))  # fmt: skip
    return out


def test_block_aggregates_equal_the_query_log_grouped_by_hour(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    rows = _blocked_rows(3000)
    for i in range(0, len(rows), 250):  # batches, as the writer commits them
        store.write_queries(rows[i : i + 250])  # type: ignore[arg-type]
    db = store.db
    names = db.execute("SELECT * FROM block_counts ORDER BY 1, 2, 3").fetchall()
    assert names == db.execute(_AGG).fetchall() and len(names) > 20
    clients = db.execute("SELECT * FROM block_clients ORDER BY 1, 2, 3, 4").fetchall()
    assert clients == db.execute(_AGG_CLIENTS).fetchall() and len(clients) > 10
    # retention: the kids' rows are kept longer; hours go when they are all older
    store.prune_queries(2 * 3600.0, {"kids": 0.0})
    assert db.execute("SELECT min(hour) FROM block_counts").fetchone() == (7200,)
    assert db.execute("SELECT DISTINCT client_group FROM block_clients WHERE hour < 7200"
                      ).fetchall() == [("kids",)]  # fmt: skip
    later = _AGG_CLIENTS.replace("WHERE", "WHERE ts >= 7200 AND")
    assert db.execute("SELECT * FROM block_clients WHERE hour >= 7200 ORDER BY 1, 2, 3, 4"
                      ).fetchall() == db.execute(later).fetchall()  # fmt: skip
    store.close()


def test_an_older_store_gets_its_block_aggregates_from_its_query_log(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = SQLiteStore(path)
    store.write_queries(_blocked_rows(500))  # type: ignore[arg-type]
    store.close()
    with sqlite3.connect(path) as db:
        db.executescript("DROP TABLE block_counts; DROP TABLE block_clients;")
    store = SQLiteStore(path)  # as a store written before the aggregates
    assert store.db.execute("SELECT * FROM block_counts ORDER BY 1, 2, 3").fetchall() == (
        store.db.execute(_AGG).fetchall()
    )
    assert store.db.execute("SELECT * FROM block_clients ORDER BY 1, 2, 3, 4").fetchall() == (
        store.db.execute(_AGG_CLIENTS).fetchall()
    )
    store.close()


def test_schema_6_gives_old_rows_their_outcome(tmp_path: Path) -> None:
    """A store written before the outcome column gets one from what the old row says."""
    path = tmp_path / "q.db"
    store = SQLiteStore(path)
    store.close()
    db = sqlite3.connect(path)
    db.executescript(
        "ALTER TABLE query_log DROP COLUMN outcome; ALTER TABLE query_log DROP COLUMN reason;"
        " PRAGMA user_version = 5;"
    )
    old = [  # ts, client, qname, qtype, rcode, answer, latency, upstream, cache_hit, transport,
        # zone, rule, trigger, action
        (3600.0, "c", "a.", 1, 0, "A 192.0.2.1", 0, "", 1, "udp", "", "", "", ""),
        (3601.0, "c", "b.", 1, 3, "", 0, "", 0, "udp", "z.", "b.z", "QNAME", "NXDOMAIN"),
        (3602.0, "c", "c.", 1, 0, "", 0, "", 1, "udp", "z.", "c.z", "QNAME", "PASSTHRU"),
        (3603.0, "c", "d.", 1, 0, "stale:A 192.0.2.2", 0, "", 1, "udp", "", "", "", ""),
        (3604.0, "c", "e.", 1, 5, "", 0, "", 0, "udp", "", "", "", ""),
        (3605.0, "c", "f.", 1, 0, "A 192.0.2.3", 900, "127.0.0.1:53", 0, "udp", "", "", "", ""),
        (3606.0, "c", "g.", 1, -1, "", 0, "", 0, "udp", "z.", "g.z", "QNAME", "DROP"),
    ]
    db.executemany(
        "INSERT INTO query_log (ts, client, qname, qtype, rcode, answer, latency_us, upstream,"
        " cache_hit, transport, policy_zone, policy_rule, policy_trigger, policy_action)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        old,
    )
    db.execute("INSERT INTO query_counts VALUES (3600, 7, 3)")  # PASSTHRU counted as a block
    db.commit()
    db.close()
    store = SQLiteStore(path)
    got = dict(store.db.execute("SELECT qname, outcome FROM query_log"))
    assert got == {"a.": "cached", "b.": "blocked", "c.": "cached", "d.": "stale",
                   "e.": "refused", "f.": "resolved", "g.": "dropped"}  # fmt: skip
    assert store.db.execute("SELECT * FROM query_counts").fetchall() == [(3600, 7, 2)]
    store.close()


def test_log_only_matches_count_as_hits_but_not_as_queries(tmp_path: Path) -> None:
    """A zone with policy "disabled" logs what it would have done: a hit, not a query row."""
    store = SQLiteStore(tmp_path / "q.db")
    w = EventWriter([], store, 0.01, 7)
    hit = ("rpz.local.", "bad.test.rpz.local", "QNAME", "disabled", False)
    w.flush([
        (1000.0, "192.0.2.1", KEY, -1, "", 0, "", Outcome.LOG_ONLY, "disabled", False, hit, ""),
        (1000.0, "192.0.2.1", KEY, 0, "A 192.0.2.9", 0, "", Outcome.CACHED, "", False, None, ""),
    ])  # fmt: skip
    assert store.db.execute("SELECT count(*) FROM query_log").fetchone() == (1,)
    assert store.policy_hits() == [("rpz.local.", "QNAME", "disabled", 1, 1000.0, 1000.0)]
    assert w.outcomes == {"cached": 1}
    store.close()


@pytest.mark.parametrize(
    ("mode", "client", "rule"),
    [
        ("full", "192.0.2.77", "32.77.2.0.192.rpz-client-ip.cip"),
        ("truncate", "192.0.2.0", "rpz-client-ip.cip"),
        ("none", "-", "rpz-client-ip.cip"),
    ],
)
def test_a_client_ip_rule_name_keeps_the_address_only_in_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, client: str, rule: str
) -> None:
    """Found by the fresh-eyes review: with client_addresses = "none" a Client-IP hit
    still wrote the address, inside the rule's name, to the query log and the log line."""
    store = SQLiteStore(tmp_path / "q.db")
    w = EventWriter([], store, 0.01, 7, client_addresses=mode)
    hit = ("cip.", "32.77.2.0.192.rpz-client-ip.cip", "CLIENT-IP", "NXDOMAIN", True)
    with caplog.at_level("INFO", logger="mamori.rpz"):
        w.flush([(1000.0, "192.0.2.77", KEY, 3, "", 0, "", Outcome.BLOCKED, "nxdomain", False,
                  hit, "")])  # fmt: skip
    row = store.db.execute("SELECT client, policy_rule FROM query_log").fetchone()
    assert row == (client, rule)
    assert f"client {client} (www.example): rpz CLIENT-IP NXDOMAIN" in caplog.text
    assert caplog.text.rstrip().endswith(f"via {rule}")
    if mode != "full":
        assert "192.0.2.77" not in caplog.text and "77.2.0.192" not in caplog.text
    store.close()
