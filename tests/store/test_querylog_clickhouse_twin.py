"""Two nodes given the same ``[server] node_name`` write to one ClickHouse: the second
one's writer says another node may be running with that name (with its pid and how long
ago it wrote), not that the first one's run crashed."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.control.writer import EventWriter
from mamori.resolver.events import Event
from mamori.resolver.query import Outcome
from mamori.store.ch_conn import DriverConn
from mamori.store.pdns_spool import Spool
from mamori.store.querylog_clickhouse import QueryLogClickHouse
from tests.store.test_querylog_contract import T0

KEY = b"\x04twin\x07example\x00\x00\x01\x00\x01\x00"


def _writer(url: str, spool: Path) -> EventWriter:
    store = QueryLogClickHouse(DriverConn(parse_clickhouse_url(url)), "edge", Spool(spool, 1 << 30))
    return EventWriter([], store, 1.0, 0)


def test_a_second_node_with_the_same_name_is_told_not_a_crash(
    clickhouse_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _writer(clickhouse_url, tmp_path / "a")
    first.begin()
    events: list[Event] = [(T0 + i, "192.0.2.1", KEY, 0, "", 0, "", Outcome.RESOLVED.value, "",
                            False, None, "") for i in range(3)]  # fmt: skip
    first.flush(events)  # the first node runs and writes
    second = _writer(clickhouse_url, tmp_path / "b")
    with caplog.at_level(logging.WARNING, "mamori.control.writer"):
        second.begin()
    text = caplog.text
    assert "another node may be running with node_name edge" in text, text
    assert f"pid {os.getpid()}" in text  # the first node's (this process here)
    assert "give each node its own [server] node_name" in text
    assert "did not stop cleanly" not in text
    assert second.lost_at_last_crash == 0
    for w in (first, second):
        w.store.close()
