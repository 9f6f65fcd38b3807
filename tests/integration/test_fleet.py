"""Issue 16's fleet, end to end with real processes: two ``mamori serve`` nodes with their
own ``[server] node_name``, one policy zone, their query logs, policy hits and passive DNS
in one ClickHouse (Debian's server); then ``mamori web`` alone (no DNS) as the fleet's
console: the REST API, the stats API and the console's query log show both nodes and each
node alone, and the passive DNS APIs answer with what both nodes resolved."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.authserver import AuthServer
from tests.support.console import PASSWORD, Client
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

UPSTREAM = """$ORIGIN example.test.
$TTL 300
@ SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
@ NS ns.example.test.
ns A 192.0.2.53
""" + "".join(f"host{i}-edge-{n} A 192.0.2.10\n" for n in "ab" for i in range(4))

POLICY = """$TTL 60
@ SOA localhost. root.localhost. 1 3600 600 86400 60
@ NS localhost.
bad.example.test CNAME .
"""

# what each node is asked: (names resolved, times the blocked name is asked)
ASKED = {"edge-a": (4, 1), "edge-b": (2, 3)}


def _mamori(conf: Path, *args: str, stdin: str | None = None) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", *args, "--config", str(conf)],
        capture_output=True, text=True, timeout=60, check=False, input=stdin,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _get(url: str, key: str) -> Any:
    req = urllib.request.Request(url, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=10) as r:
        body = r.read().decode()
    if r.headers.get("Content-Type", "").startswith("application/json"):
        return json.loads(body)
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return int(r.status) == 200
    except (OSError, urllib.error.HTTPError):
        return False


def test_two_nodes_one_clickhouse_one_console(tmp_path: Path, clickhouse_url: str) -> None:
    store_url = clickhouse_url
    pdns_url = clickhouse_url + "_pdns"
    zone = tmp_path / "block.rpz"
    zone.write_text(POLICY)
    extra = (
        f'[[rpz]]\nname = "block.rpz."\nfile = "{zone}"\n'
        f'[pdns]\nenabled = true\nflush_interval = 0.1\nurl = "{pdns_url}"\n'
    )
    with AuthServer(UPSTREAM, "example.test.") as up:
        nodes: dict[str, MamoriProcess] = {}
        for name in ASKED:
            (tmp_path / name).mkdir()
            m = MamoriProcess(tmp_path / name, [f"127.0.0.1:{up.port}"], extra, node_name=name)
            text = m.config.read_text().replace(
                "flush_interval = 0.05\n[log]", f'flush_interval = 0.05\nurl = "{store_url}"\n[log]'
            )
            assert text.count(f'url = "{store_url}"\n') == 1
            m.config.write_text(text)
            nodes[name] = m
        try:
            for name, m in nodes.items():
                m.start()
                resolved, blocked = ASKED[name]
                for i in range(resolved):
                    answer = m.query(f"host{i}-{name}.example.test.")
                    assert answer.rcode() == 0 and "192.0.2.10" in answer.to_text()
                for _ in range(blocked):
                    assert m.query("bad.example.test.").rcode() == 3  # NXDOMAIN by policy
        finally:
            codes = [m.stop() for m in nodes.values()]
        assert codes == [0, 0], [m.stderr() for m in nodes.values()]
        for m in nodes.values():  # nothing left waiting: every batch went to ClickHouse
            assert not list(m.tmp.glob("*-spool/*.batch")), m.stderr()

    # The fleet's console: `mamori web` on its own machine, the same two URLs.
    console = tmp_path / "console"
    console.mkdir()
    port = free_port()
    conf = console / "mamori.toml"
    conf.write_text(
        f'[server]\nnode_name = "console"\n'
        f'[store]\npath = "{console / "m.db"}"\nurl = "{store_url}"\n'
        f'[pdns]\nurl = "{pdns_url}"\n'
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
    )
    key = _mamori(conf, "keys", "add", "noc", "--scope", "read")
    _mamori(conf, "users", "add", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "web", "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert until(lambda: _up(f"{base}/openapi.json"), 30)
        # the REST API: every node's rows, then each node's own
        every = _get(f"{base}/api/v1/queries?limit=100", key)["queries"]
        assert sorted({r["node"] for r in every}) == ["edge-a", "edge-b"]
        assert len(every) == sum(a + b for a, b in ASKED.values())
        for name, (resolved, blocked) in ASKED.items():
            mine = _get(f"{base}/api/v1/queries?limit=100&node={name}", key)["queries"]
            assert {r["node"] for r in mine} == {name}
            assert sorted(r["qname"] for r in mine if r["outcome"] == "resolved") == [
                f"host{i}-{name}.example.test." for i in range(resolved)
            ]
            assert [r["policy_zone"] for r in mine if r["outcome"] == "blocked"] == [
                "block.rpz."
            ] * blocked
            stats = _get(f"{base}/api/v1/stats?node={name}", key)
            assert (stats["node"], stats["queries"], stats["blocked"]) == (
                name, resolved + blocked, blocked,
            )  # fmt: skip
            assert stats["top_blocked"] == [
                {"name": "bad.example.test.", "zone": "block.rpz.", "count": blocked}
            ]
        fleet = _get(f"{base}/api/v1/stats", key)
        assert (fleet["queries"], fleet["blocked"]) == (10, 4)
        # the console's query log page: a node selector, and the filter
        web = Client(base)
        web.login()
        status, page = web.get("/queries")
        assert status == 200 and 'name="node"' in page
        assert "host0-edge-a.example.test." in page and "host0-edge-b.example.test." in page
        status, page = web.get("/queries?node=edge-b")
        assert status == 200
        assert "host1-edge-b.example.test." in page and "-edge-a.example.test." not in page
        # the Policy page: the fleet's policy hits (this console serves no zone itself)
        status, page = web.get("/policy")
        assert status == 200 and 'id="logged-hits"' in page
        assert '<td>block.rpz.</td><td class="n">4</td>' in page
        for name, (_resolved, blocked) in ASKED.items():
            _s, page = web.get(f"/policy?node={name}")
            assert f'<td>block.rpz.</td><td class="n">{blocked}</td>' in page
        # passive DNS: what both nodes resolved, from one API
        cof = _get(f"{base}/pdns/query/192.0.2.10", key)
        names = {r["rrname"] for r in cof}
        assert {f"host{i}-edge-a.example.test." for i in range(4)} <= names
        assert {f"host{i}-edge-b.example.test." for i in range(2)} <= names
    finally:
        proc.terminate()
        assert proc.wait(15) == 0 or proc.returncode == -15
        assert proc.stderr is not None
        proc.stderr.close()
