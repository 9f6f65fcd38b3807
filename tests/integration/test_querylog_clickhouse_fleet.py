"""Two ``mamori serve`` nodes with their own ``[server] node_name`` write their query logs
to one ClickHouse (Debian's server); ``mamori check`` reports it; the fleet's reader
shows both nodes and filters by node; each node's writer stops cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.store.base import QueryFilter
from mamori.store.ch_conn import DriverConn
from mamori.store.querylog_chreader import ClickHouseQueryReader
from mamori.store.querylog_clickhouse import QueryLogClickHouse
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until

ZONE = """$ORIGIN example.test.
$TTL 300
@ SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@ NS ns.example.test.
ns A 192.0.2.53
* A 192.0.2.10
"""


def test_two_serve_nodes_write_one_clickhouse_query_log(
    tmp_path: Path, clickhouse_url: str
) -> None:
    url = parse_clickhouse_url(clickhouse_url)
    with AuthServer(ZONE, "example.test.") as up:
        nodes = {}
        for name in ("edge-a", "edge-b"):
            (tmp_path / name).mkdir()
            m = MamoriProcess(tmp_path / name, [f"127.0.0.1:{up.port}"], node_name=name)
            text = m.config.read_text().replace(
                "flush_interval = 0.05\n", f'flush_interval = 0.05\nurl = "{clickhouse_url}"\n'
            )
            m.config.write_text(text)
            nodes[name] = m
        check = subprocess.run(
            [sys.executable, "-m", "mamori", "check", "--config", str(nodes["edge-a"].config)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
        assert f"store:     ClickHouse {url}, server 18." in check.stdout
        assert "(node edge-a)" in check.stdout and "tables present" in check.stdout
        try:
            for name, m in nodes.items():
                m.start()
                for i in range(4 if name == "edge-a" else 3):
                    assert m.query(f"q{i}.{name}.example.test.").rcode() in (0, 3)
        finally:
            codes = [m.stop() for m in nodes.values()]
        assert codes == [0, 0], [m.stderr() for m in nodes.values()]
    reader = ClickHouseQueryReader(DriverConn(url), settle=0.0)
    assert until(lambda: len(reader.queries(QueryFilter(), None, 100)) == 7, 15)
    assert reader.nodes() == ["edge-a", "edge-b"]
    got = reader.queries(QueryFilter(node="edge-b"), None, 100)
    assert sorted(r[3] for r in got) == [f"q{i}.edge-b.example.test." for i in range(3)]
    assert {r[-1] for r in got} == {"edge-b"}
    assert sum(q for q, _b in reader.hourly(1, "edge-a").values()) == 4
    for name, n in (("edge-a", 4), ("edge-b", 3)):
        run = QueryLogClickHouse(DriverConn(url), name, create=False)
        last = run.last_run()
        assert last is not None and last.clean and last.committed == n, (name, last)
        run.close()
    reader.close()
