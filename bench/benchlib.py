"""Helpers shared by the dnsperf benchmarks: ports, tools, CPU, servers pinned to a CPU.

Each server is measured at steady state: after its port answers ("ready s"), the bench
waits until the server and its children are idle (a second with < 5% of a CPU), so
start-up work on the pinned CPU (a policy compiled, feeds loaded) is not measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[1]
SERVER_CPU = "0"
CLIENT_CPU = "1"


def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no free port")


def tool(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if not path:
        sys.exit(f"bench: {name} not found (run scripts/install-test-deps.sh as root)")
    return path


def cpu_seconds(pid: int) -> float:
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of the whole process *pid*, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """utime + stime of *pid* and every process below it, seconds (0 for one gone)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(d.name))
        times[int(d.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(children.get(p, ()))
    return total


def wait_idle(pid: int, timeout: float = 120.0) -> float:
    """Wait until *pid* and its children use < 5% of a CPU over a second (start-up work
    done: a policy compiled, feeds loaded); the seconds waited."""
    t0 = time.monotonic()
    before = tree_cpu(pid)
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now = tree_cpu(pid)
        if now - before < 0.05:
            break
        before = now
    return time.monotonic() - t0


def wait_udp(port: int, timeout: float = 15.0) -> None:
    """Wait until something answers a DNS query on 127.0.0.1:port."""
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05bench\x04test\x00\x00\x06\x00\x01"
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        while time.monotonic() < deadline:
            s.sendto(q, ("127.0.0.1", port))
            try:
                if s.recv(4096)[:2] == b"\x12\x34":
                    return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def dnsperf(port: int, qfile: Path, *args: str) -> str:
    cmd = [
        "taskset",
        "-c",
        CLIENT_CPU,
        tool("dnsperf"),
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(qfile),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout


def field(out: str, label: str) -> float:
    for line in out.splitlines():
        if line.strip().startswith(label):
            return float(line.split(":", 1)[1].split()[0])
    raise ValueError(f"dnsperf output has no {label!r}:\n{out}")


def measure(name: str, pid: int, port: int, qfile: Path, duration: int) -> dict[str, float | str]:
    dnsperf(port, qfile, "-n", "1", "-q", "50")  # warm the cache: every name once
    # Latency at a fixed, moderate load first (nothing queued behind it) ...
    lat_out = dnsperf(port, qfile, "-l", "5", "-Q", "5000", "-v")
    lat = sorted(
        float(line.split()[-1]) * 1e6
        for line in lat_out.splitlines()
        if line.startswith(">") and line.split()[-1].replace(".", "").isdigit()
    )
    lost = field(lat_out, "Queries lost")
    # ... then throughput and CPU per query at saturation.
    u0, s0 = cpu_split(pid)
    out = dnsperf(port, qfile, "-l", str(duration), "-q", "200")
    u1, s1 = cpu_split(pid)
    cpu0, cpu1 = u0 + s0, u1 + s1
    completed = field(out, "Queries completed")
    codes = next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Response codes" in ln), ""
    )
    qps = field(out, "Queries per second")
    q = statistics.quantiles(lat, n=100) if len(lat) > 100 else [float("nan")] * 99
    return {
        "server": name,
        "qps": round(qps),
        "completed": int(completed),
        "cpu_us_per_query": round((cpu1 - cpu0) / completed * 1e6, 2),
        "user_us_per_query": round((u1 - u0) / completed * 1e6, 2),
        "sys_us_per_query": round((s1 - s0) / completed * 1e6, 2),
        "p50_us_at_5k": round(q[49], 1),
        "p99_us_at_5k": round(q[98], 1),
        "lost_at_5k": int(lost),
        "rcodes": codes,
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    """Starts servers pinned to CPU 0, measures them, stops them by PID."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []
        self.results: list[dict[str, float | str]] = []

    def spawn(
        self, cmd: list[str], log: str, cpu: str = SERVER_CPU, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        err = (self.work / log).open("wb")
        self.logs.append(err)
        p = subprocess.Popen(
            ["taskset", "-c", cpu, *cmd], stderr=err, cwd=REPO, env={**os.environ, **(env or {})}
        )
        self.procs.append(p)
        return p

    def run(
        self,
        label: str,
        cmd: list[str],
        port: int,
        qfile: Path,
        log: str,
        env: dict[str, str] | None = None,
    ) -> None:
        t0 = time.monotonic()
        p = self.spawn(cmd, log, env=env)
        wait_udp(port, timeout=300)
        ready_s = time.monotonic() - t0
        wait_idle(p.pid)  # measured at steady state: start-up work on the same CPU is done
        rss = rss_mb(p.pid)
        result = measure(label, p.pid, port, qfile, self.args.duration)
        result["ready_s"] = round(ready_s, 2)
        result["rss_mb"] = round(rss)
        stop(p)
        text = (self.work / log).read_text(errors="replace")
        dropped = [ln for ln in text.splitlines() if "events dropped" in ln]
        if dropped:
            result["events_dropped"] = dropped[-1].split(": ", 2)[-1]
        self.results.append(result)

    def close(self) -> None:
        for p in self.procs:
            stop(p)
        for f in self.logs:
            f.close()
