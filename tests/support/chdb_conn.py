"""A current ClickHouse engine in-process (``chdb``) behind the stores' ``Conn`` seam: the
same SQL the stores send to Debian's 18.16 server runs on a current release."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from mamori.errors import StoreError
from mamori.store.ch_conn import Row, lit


class ChdbConn:
    def __init__(self, session: Any, database: str) -> None:
        self.session = session
        self.database = database

    def query(self, sql: str) -> list[Row]:
        try:
            res = self.session.query(sql, "JSONCompact")
        except Exception as e:  # chdb raises its own RuntimeError subclasses
            raise StoreError(f"chdb: {str(e).splitlines()[0][:300]}") from e
        text = res.bytes() if hasattr(res, "bytes") else bytes(res)
        if not text.strip():
            return []
        return [tuple(r) for r in json.loads(text)["data"]]

    def stream(self, sql: str) -> Iterator[Row]:
        yield from self.query(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        values = ", ".join(lit(tuple(r)) for r in rows)
        self.query(f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES {values}")

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[list[Any]]) -> None:
        self.insert(table, columns, list(zip(*data, strict=True)))

    def version(self) -> tuple[int, ...]:
        return tuple(int(x) for x in str(self.query("SELECT version()")[0][0]).split("."))

    def close(self) -> None:
        pass
