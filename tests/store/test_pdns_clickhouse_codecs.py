"""Column codecs on the passive DNS tables: a current ClickHouse (chdb) stores every
column of the big tables with its codec, Debian's 18.16 (no codecs) keeps the server's
method, and a store whose tables were created without codecs keeps working as it is."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store import pdns_chschema as schema
from mamori.store.pdns_clickhouse import PdnsClickHouse
from mamori.store.pdns_spool import Spool
from tests.store.test_pdns_contract import BATCH1, BATCH2, T
from tests.support.chdb_conn import ChdbConn

BIG = ("pdns_rrset", "pdns_rdata", "pdns_names")


def _codecs(store: PdnsClickHouse) -> dict[tuple[str, str], str]:
    rows = store.conn.query(
        "SELECT table, name, compression_codec FROM system.columns"
        f" WHERE database = '{store.dbname}' AND table IN {BIG}"
    )
    return {(str(t), str(c)): str(k) for t, c, k in rows}


def test_current_engine_stores_every_column_of_the_big_tables_with_a_codec(
    chdb_session: Any, tmp_path: Path
) -> None:
    store = PdnsClickHouse(ChdbConn(chdb_session, f"t_{uuid.uuid4().hex[:12]}"))
    got = _codecs(store)
    assert got[("pdns_rrset", "rname")] == "CODEC(ZSTD(3))"
    assert got[("pdns_rdata", "pkey")] == "CODEC(ZSTD(3))"
    assert got[("pdns_rrset", "rrtype")] == "CODEC(ZSTD(1))"
    assert got[("pdns_rdata", "count")] == "CODEC(ZSTD(3))"  # a state: generic codecs only
    assert got[("pdns_rrset", "bailiwick")] == "CODEC(ZSTD(3))"  # over LowCardinality
    assert got[("pdns_names", "uname")] == "CODEC(ZSTD(3))"
    assert [k for k, v in got.items() if not v] == []
    store.write(BATCH1)
    assert store.rrset("www.example.com", 1)[0].count == 3
    store.close()


def test_debian_1816_has_no_codecs_and_says_so(clickhouse_server: Any, tmp_path: Path) -> None:
    from mamori.store.ch_conn import DriverConn

    url = clickhouse_server.url.rsplit("/", 1)[0] + f"/t_{uuid.uuid4().hex[:12]}"
    store = PdnsClickHouse(DriverConn(parse_clickhouse_url(url)))
    assert store.conn.version() < schema.MODERN
    assert all("CODEC" not in stmt for _name, stmt in schema.ddl("db", store.conn.version()))
    assert any("column codecs" in m for m in schema.missing_features(store.conn.version()))
    store.write(BATCH1)
    assert store.rrset("www.example.com", 1)[0].count == 3
    store.close()


def test_store_created_without_codecs_keeps_its_layout_and_answers(
    chdb_session: Any, tmp_path: Path
) -> None:
    """A store created by an earlier mamori on a current server (the same tables, no
    codecs, the earlier skip index sizes): nothing is re-created, reads and writes work."""
    db = f"t_{uuid.uuid4().hex[:12]}"
    conn = ChdbConn(chdb_session, db)
    conn.query(f"CREATE DATABASE {db}")
    for _name, stmt in schema.ddl(db, conn.version()):
        plain = re.sub(r" CODEC\((?:[^()]|\([^()]*\))*\)", "", stmt)
        conn.query(plain.replace("ngrambf_v1(3, 8192,", "ngrambf_v1(3, 65536,"))
    old = PdnsClickHouse(ChdbConn(chdb_session, db), Spool(tmp_path / "spool", 1 << 20))
    assert old.ensure_schema() == []
    assert set(_codecs(old).values()) == {""}
    old.write(BATCH1)
    old.write(BATCH2)
    got = old.rrset("www.example.com", 1)[0]
    assert (got.time_first, got.time_last, got.count) == (T + 50, T + 250, 5)
    assert "mizuho-bank.example." in old.keyword("mizuho")
    old.close()


@pytest.mark.parametrize(
    ("column_type", "new", "clause"),
    [
        ("String", True, " CODEC(ZSTD(3))"),
        ("LowCardinality(String)", True, " CODEC(ZSTD(3))"),
        ("UInt16", True, " CODEC(ZSTD(1))"),
        ("AggregateFunction(min, UInt32)", True, " CODEC(ZSTD(3))"),
        ("Float64", True, ""),
        ("String", False, ""),
    ],
)
def test_codec_by_type(column_type: str, new: bool, clause: str) -> None:
    assert schema.codec(column_type, new) == clause
