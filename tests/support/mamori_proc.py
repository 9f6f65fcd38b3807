"""Run the real `mamori serve` process on loopback for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


class MamoriProcess:
    def __init__(
        self,
        tmp: Path,
        upstreams: list[str],
        extra: str = "",
        upstream_timeout: float = 0.4,
        **server: object,
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.db = tmp / "mamori.db"
        self.config = tmp / "mamori.toml"
        self.stderr_path = tmp / "mamori.stderr"
        settings = {
            # MAMORI_TEST_WORKERS=2 runs every integration test against worker processes
            "workers": int(os.environ.get("MAMORI_TEST_WORKERS", "1")),
            "listen": [f"127.0.0.1:{self.port}", f"[::1]:{self.port}"],
            "allow": ["127.0.0.1/32", "::1"],
            "rate_limit": 0,
            "stats_interval": 0,
            **server,
        }
        lines = ["[server]"] + [f"{k} = {_toml(v)}" for k, v in settings.items()]
        lines += [
            "[upstream]",
            f"servers = {_toml(upstreams)}",
            f"timeout = {upstream_timeout}",
            "attempts = 2",
            "[store]",
            f'path = "{self.db}"',
            "flush_interval = 0.05",
            "[log]",
            'level = "debug"',
            extra,
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> MamoriProcess:
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mamori", "serve", "--config", str(self.config)],
            stderr=self._stderr,
            stdout=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait:
            try:
                self.wait_ready()
            except RuntimeError:
                self.stop()  # the process and the log file, whatever happened
                raise
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mamori exited {self.proc.returncode}: {self.stderr()}")
            if "serving DNS" in self.stderr():
                return
            time.sleep(0.05)
        raise RuntimeError(f"mamori did not start: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def query(
        self,
        name: str,
        rdtype: str = "A",
        tcp: bool = False,
        source: str | None = None,
        host: str = "127.0.0.1",
        timeout: float = 3.0,
        **make: object,
    ) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, **make)  # type: ignore[arg-type]
        if tcp:
            return dns.query.tcp(q, host, port=self.port, timeout=timeout, source=source)
        return dns.query.udp(q, host, port=self.port, timeout=timeout, source=source)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


def rcode_text(m: dns.message.Message) -> str:
    return dns.rcode.to_text(m.rcode())
