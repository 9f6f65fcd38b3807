"""The device a query came from (DoH path, DoT/DoQ name, EDNS client MAC): written by the
writer from the slot label, kept by per-group retention, shown and filtered in the
console's query log and the REST API."""

from __future__ import annotations

import time
from pathlib import Path

from mamori.control.writer import EventWriter
from mamori.resolver.query import Outcome
from mamori.store.sqlite import SQLiteStore
from tests.support.console import Client, ConsoleServer, write_config

KEY = b"\x03www\x07example\x00\x00\x01\x00\x01\x00"
MAC = "a0:b1:c2:d3:e4:f5"


def _event(ts: float, label: str, client: str = "192.0.2.7") -> tuple[object, ...]:
    return (ts, client, KEY, 0, "A 192.0.2.1", 0, "", Outcome.CACHED, "", True, None, label)


def test_writer_splits_groups_and_device_and_group_retention_still_applies(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    now = time.time()
    old = now - 3 * 86400
    w = EventWriter([], store, 0.01, retention_days=0, group_days={"kids": 1})
    w.flush([_event(old, f"kids@{MAC}"), _event(old, "@phone"), _event(now, "kids,guests@tab-1"),
             _event(old, "kids"), _event(now, "")])  # type: ignore[list-item]  # fmt: skip
    rows = store.db.execute("SELECT client_group, device FROM query_log ORDER BY id").fetchall()
    assert rows == [("kids", MAC), ("", "phone"), ("kids,guests", "tab-1"), ("kids", ""), ("", "")]
    # kids keep 1 day: its old rows go whether or not a device was named; the rest stays
    assert w.prune(now) == 2
    rows = store.db.execute("SELECT client_group, device FROM query_log ORDER BY id").fetchall()
    assert rows == [("", "phone"), ("kids,guests", "tab-1"), ("", "")]
    store.close()


def test_console_and_api_show_and_filter_the_device(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    store = SQLiteStore(cfg.store.path)
    w = EventWriter([], store, 0.01, retention_days=0)
    now = time.time()
    w.flush([_event(now - 2, f"kids@{MAC}"), _event(now - 1, "@phone"), _event(now, "")])  # type: ignore[list-item]
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        c.login()
        status, page = c.get(f"/queries?device={MAC}")
        assert status == 200
        assert '<td class="device">a0:b1:c2:d3:e4:f5</td>' in page
        assert page.count('<td class="device">') == 1  # filtered: only that device's row
        assert f'name="device" value="{MAC}"' in page and ">Device</th>" in page
        status, doc = c.json("/queries.json?after=0")
        assert status == 200 and [r["device"] for r in doc["rows"]] == [MAC, "phone", ""]
        status, doc = c.json("/api/v1/queries?device=phone")
        assert status == 200
        assert [(q["device"], q["client_group"]) for q in doc["queries"]] == [("phone", "")]
        status, doc = c.json("/api/v1/queries")
        assert [q["device"] for q in doc["queries"]] == ["", "phone", MAC]  # newest first
    store.close()
