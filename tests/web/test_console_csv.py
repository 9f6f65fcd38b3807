"""The console's CSV exports open safely in a spreadsheet: a cell that starts like a
formula (``=``, ``+``, ``-``, ``@``, tab, CR) gets a leading ``'`` (OWASP "CSV
Injection")."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from mamori import csvsafe
from mamori.store.querylog_open import open_query_store
from tests.support.console import Client, ConsoleServer, write_config


@pytest.mark.parametrize(
    ("given", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
        (-5, -5),  # a number stays a number
    ],
)
def test_a_cell_that_starts_like_a_formula_gets_a_quote(given: object, written: object) -> None:
    assert csvsafe.cell(given) == written


def test_queries_csv_neutralises_formula_cells(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    store = open_query_store(cfg)
    t = time.time() - 600
    store.write_queries(
        [(t, "192.0.2.1", "=cmd|' /C calc'!A0.example.", 1, 0, "", 0, "", False, "udp",
          "", "", "", "", "resolved", "", "", "@dev")],
        None,
    )  # fmt: skip
    store.close()
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        c.login()
        status, text = c.get("/queries.csv")
    assert status == 200
    table = list(csv.reader(io.StringIO(text)))
    assert len(table) == 2
    row = dict(zip(table[0], table[1], strict=True))
    assert row["qname"] == "'=cmd|' /C calc'!A0.example."
    assert row["device"] == "'@dev"
    assert row["client"] == "192.0.2.1"
