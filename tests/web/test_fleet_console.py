"""A fleet: two nodes with their own ``[server] node_name`` write their query logs and
alerts to one ClickHouse (Debian's server); one console (``mamori web`` alone: no DNS)
shows both and filters by node, in the pages, the CSV, the live JSON and the API."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path
from urllib.parse import urlencode

from mamori.alerts.engine import AlertEngine
from mamori.store.querylog_open import open_query_store
from mamori.web.app import keys_path
from mamori.web.keys import KeyStore
from tests.store.test_querylog_contract import hits
from tests.support.console import PASSWORD, Client, ConsoleServer, write_config
from tests.support.net import free_port
from tests.support.wait import until

START = time.time() - 7200  # within the overview's 24 hours, older than the live lag


def _rows(node: str, n: int) -> list[tuple[object, ...]]:
    return [
        (START + i * 60.0, "192.0.2.9", f"q{i}.{node}.example.", 1, 3, "", 0, "", False, "udp",
         "block.rpz.", f"q{i}.{node}.example.block.rpz.", "QNAME", "NXDOMAIN", "blocked", "",
         "", "")
        for i in range(n)
    ]  # fmt: skip


def test_two_nodes_one_clickhouse_one_console_filtered_by_node(
    tmp_path: Path, clickhouse_url: str
) -> None:
    nodes = {"edge-a": 5, "edge-b": 3}
    for node, n in nodes.items():
        (tmp_path / node).mkdir()
        cfg = write_config(
            tmp_path / node,
            f'url = "{clickhouse_url}"\n[server]\nnode_name = "{node}"\n'
            '[[alert]]\nname = "c2"\nwhen = "hit"\nthrottle = 0\n',
        )
        store = open_query_store(cfg)  # each node's writer, its own spool
        rows = _rows(node, n)
        store.write_queries(rows, None, hits(rows))  # type: ignore[arg-type]
        store.close()
        engine = AlertEngine(cfg)  # the node's alert rules: history here and in ClickHouse
        engine.start()
        engine.on_hits([(START, f"192.0.2.{n}", "q0.example.", "block.rpz.", "QNAME",
                         "NXDOMAIN", "blocked")])  # fmt: skip
        assert until(lambda e=engine: e.sent == 1, 10)
        engine.stop()
    (tmp_path / "console").mkdir()
    console = write_config(
        tmp_path / "console", f'url = "{clickhouse_url}"\n[server]\nnode_name = "console"\n'
    )
    keys = KeyStore(keys_path(console))
    key = keys.add("analyst", scope="read")
    keys.close()
    with ConsoleServer(console) as srv:  # no runtime: the APIs and console, without DNS
        c = Client(srv.base)
        c.login()
        _s, page = c.get("/queries")
        assert re.findall(r'<option value="(edge-[ab])"', page) == ["edge-a", "edge-b"]
        assert {"q0.edge-a.example.", "q2.edge-b.example."} <= set(
            re.findall(r'class="qname">([^<]+)<', page)
        )
        _s, page = c.get("/queries?node=edge-b")
        names = re.findall(r'class="qname">([^<]+)<', page)
        assert sorted(names) == [f"q{i}.edge-b.example." for i in range(3)]
        assert set(re.findall(r'class="node">([^<]*)<', page)) == {"edge-b"}
        _s, text = c.get("/queries.csv?node=edge-a")
        table = list(csv.reader(io.StringIO(text)))
        assert table[0][-1] == "node" and {r[-1] for r in table[1:]} == {"edge-a"}
        assert len(table) == 1 + 5
        status, doc = c.json("/queries.json?node=edge-a&after=0")
        assert status == 200 and [r["node"] for r in doc["rows"]] == ["edge-a"] * 5
        status, _h, body = c.request("/api/v1/queries?node=edge-b", headers={"X-API-Key": key})
        out = json.loads(body)["queries"]
        assert status == 200 and [q["node"] for q in out] == ["edge-b"] * 3
        _s, page = c.get("/?node=edge-a")
        assert '<option value="edge-a" selected>' in page
        assert re.search(r'id="n-queries">5<', page) and re.search(r'id="n-blocked">5<', page)
        _s, page = c.get("/")
        assert re.search(r'id="n-queries">8<', page), "every node's queries"
        _s, page = c.get("/alerts")
        assert "192.0.2.5" in page and "192.0.2.3" in page, "both nodes' alerts"
        table = page.split('id="alerts"', 1)[1]
        assert "<th>Node</th>" in table
        assert sorted(re.findall(r'class="node">([^<]*)<', table)) == ["edge-a", "edge-b"]
        _s, page = c.get("/alerts?node=edge-b")
        assert '<option value="edge-b" selected>' in page
        table = page.split('id="alerts"', 1)[1]
        assert re.findall(r'class="node">([^<]*)<', table) == ["edge-b"]
        assert "192.0.2.3" in table and "192.0.2.5" not in table


def test_a_clickhouse_that_does_not_answer_gives_503_not_a_crash(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = write_config(tmp_path, f'url = "clickhouse://127.0.0.1:{port}/fleet"\n')
    keys = KeyStore(keys_path(cfg))
    key = keys.add("analyst", scope="read")
    keys.close()
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        _s, page = c.get("/login")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf
        form = urlencode({"csrf": csrf.group(1), "user": "admin", "password": PASSWORD,
                          "next": "/queries"})  # fmt: skip
        status, page = c._post("/login", form.encode())  # logged in, then the page: 503
        assert status == 503 and "does not answer" in page, (status, page)
        status, page = c.get("/?node=x")
        assert status == 503 and "cannot connect: connection refused" in page
        status, _h, body = c.request("/api/v1/queries", headers={"X-API-Key": key})
        assert status == 503 and "error" in json.loads(body)
        status, text = c.get("/queries.csv")  # not an empty 200: the first block is read first
        assert status == 503 and "cannot connect: connection refused" in text, (status, text)
