"""A private ClickHouse server for tests: Debian's ``clickhouse-server`` (18.16) on free
127.0.0.1 ports, with its own config and data directory, stopped by its PID.

``ClickHouse(dir).start()`` writes ``config.xml`` and ``users.xml`` under *dir*, starts
the server and waits (bounded) until it answers ``SELECT 1`` over the native protocol.
``shards``: other servers' (host, tcp port) forming a cluster named ``mamori_test``
with this one (one shard each), for the Distributed tables.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.support.net import free_port

BINARY = shutil.which("clickhouse-server") or (
    "/usr/sbin/clickhouse-server" if os.path.exists("/usr/sbin/clickhouse-server") else None
)
MISSING = "Debian's clickhouse-server is not installed (scripts/install-test-deps.sh)"
CLUSTER = "mamori_test"
PW_USER, PW = "mamori_pw", "s3cret-pw"  # a user with a password (error message tests)

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/error.log</errorlog>
    <size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <interserver_http_port>{inter}</interserver_http_port>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>8589934592</uncompressed_cache_size>
  <mark_cache_size>67108864</mark_cache_size>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
  <remote_servers><{cluster}>{shards}</{cluster}></remote_servers>{compression}
</yandex>
"""
_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default>
    <{PW_USER}><password>{PW}</password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></{PW_USER}></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""


class ClickHouse:
    def __init__(
        self, root: Path, shards: list[tuple[str, int]] | None = None, compression: str = ""
    ) -> None:
        """*compression*: the method of the server's ``<compression>`` section for every
        part ("lz4": the server's default, "zstd"); "" leaves the section out."""
        self.root = root
        self.compression = compression
        self.tcp = free_port()
        self.http = free_port()
        self.inter = free_port()
        self.shards = shards
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0  # seconds from exec to the first answer

    @property
    def url(self) -> str:
        return f"clickhouse://127.0.0.1:{self.tcp}/default"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shards = self.shards or [("127.0.0.1", self.tcp)]
        xml = "".join(
            f"<shard><replica><host>{h}</host><port>{p}</port></replica></shard>" for h, p in shards
        )
        (self.root / "config.xml").write_text(
            _CONFIG.format(
                dir=self.root,
                tcp=self.tcp,
                http=self.http,
                inter=self.inter,
                cluster=CLUSTER,
                shards=xml,
                compression=(
                    f"\n  <compression><case><min_part_size>0</min_part_size>"
                    f"<min_part_size_ratio>0</min_part_size_ratio>"
                    f"<method>{self.compression}</method></case></compression>"
                    if self.compression
                    else ""
                ),
            )
        )
        (self.root / "users.xml").write_text(
            _USERS.replace("{PW_USER}", PW_USER).replace("{PW}", PW)
        )

    def start(self, timeout: float = 60.0) -> ClickHouse:
        """Start (again, on the same ports and data) and wait until it answers."""
        assert BINARY is not None, MISSING
        self.write_config()
        t0 = time.monotonic()
        out = (self.root / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [BINARY, f"--config-file={self.root / 'config.xml'}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )
        out.close()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited: {self.log_tail()}")
            if self.ready():
                self.started_in = time.monotonic() - t0
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"clickhouse-server not ready after {timeout} s: {self.log_tail()}")

    def ready(self) -> bool:
        from clickhouse_driver import Client
        from clickhouse_driver.errors import Error as ChError

        client = Client("127.0.0.1", port=self.tcp, connect_timeout=1, send_receive_timeout=2)
        try:
            return bool(client.execute("SELECT 1") == [(1,)])
        except (ChError, OSError, EOFError):
            return False
        finally:
            client.disconnect()

    def kill(self) -> None:
        """SIGKILL (a crash), by PID; waits for the process to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after 10 s."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(10)

    def log_tail(self) -> str:
        texts = []
        for name in ("error.log", "stdout.log"):
            with contextlib.suppress(OSError):
                texts.append((self.root / name).read_text(errors="replace")[-1500:])
        return "\n".join(texts)
