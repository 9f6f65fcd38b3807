"""Logging never takes DNS down: ``mamori serve`` whose ``[store] url`` and ``[pdns] url``
name a ClickHouse that refuses the user (a wrong password) serves DNS, says so once at
start (URL, cause, where the logs wait) and keeps the query log in its spool; ``mamori
check`` fails on it and names both URLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mamori.store.pdns_spool import Spool
from tests.integration.test_querylog_clickhouse_fleet import ZONE
from tests.support.authserver import AuthServer
from tests.support.clickhouse import PW_USER
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until


def test_a_refused_clickhouse_user_logs_loudly_and_dns_is_served(
    tmp_path: Path, clickhouse_url: str
) -> None:
    bad = clickhouse_url.replace("clickhouse://", f"clickhouse://{PW_USER}:wrong@")
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(
            tmp_path,
            [f"127.0.0.1:{up.port}"],
            f'[pdns]\nenabled = true\nurl = "{bad}"\n',
            node_name="edge-r",
        )
        m.config.write_text(m.config.read_text().replace(
            "flush_interval = 0.05\n", f'flush_interval = 0.05\nurl = "{bad}"\n'
        ))  # fmt: skip
        m.start()  # "serving DNS": it did not stop at start
        try:
            assert m.query("a.example.test.").rcode() in (0, 3)  # answered
            spool = Spool(tmp_path / "querylog-spool", 1 << 30)
            assert until(lambda: len(spool) >= 1, 20), m.stderr()[-2000:]
        finally:
            assert m.stop() == 0, m.stderr()[-2000:]
        err = m.stderr()
        line = next(x for x in err.splitlines() if "query log:" in x and "authentication" in x)
        assert bad.split("@")[1].split("/")[0] in line and "wrong password" in line, line
        assert f"kept in {tmp_path / 'querylog-spool'} until this is fixed" in line, line
        assert "passive DNS" in err and "authentication failed" in err
        assert "(sensor resolver:edge-r)" in err  # [pdns] sensor's default: the node's name
        check = subprocess.run(
            [sys.executable, "-m", "mamori", "check", "--config", str(m.config)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert check.returncode != 0
        assert "[pdns] url" in check.stderr and "[store] url" in check.stderr, check.stderr
        assert check.stderr.count("authentication failed") == 2, check.stderr
