"""Helpers for benchmarks of a whole `mamori serve` service (control plane + workers).

Knot as the authoritative upstream, mamori configurations, the process tree of
a running service (control plane, worker factory, workers), its memory from
/proc/PID/smaps_rollup, its CPU from /proc/PID/stat, /metrics scrapes, dnsperf
pinned to chosen CPUs, and the time until a listed name is answered NXDOMAIN.
Only 127.0.0.1; every process is started here and stopped by its PID.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CLK_TCK, Bench, free_port, tool, wait_udp

ALL_CPUS = f"0-{(os.cpu_count() or 1) - 1}"
MAMORI = [sys.executable, "-m", "mamori", "serve", "--config"]


# ------------------------------------------------------------------ upstream
def start_knot(bench: Bench, work: Path, records: Iterable[str], cpu: str) -> int:
    """Knot serving ``bench.test.`` with *records* (zone-file lines); its UDP port."""
    zone = [
        "$TTL 86400",
        "@ IN SOA ns1 hostmaster 1 3600 600 86400 300",
        "@ IN NS ns1",
        "ns1 IN A 127.0.0.1",
        *records,
    ]
    (work / "bench.test.zone").write_text("\n".join(zone) + "\n")
    port = free_port()
    (work / "knot.conf").write_text(
        f'server:\n    rundir: "{work}"\n    listen: 127.0.0.1@{port}\n'
        f'database:\n    storage: "{work}"\n'
        "log:\n  - target: stderr\n    any: warning\n"
        f'zone:\n  - domain: bench.test.\n    file: "{work}/bench.test.zone"\n'
    )
    bench.spawn([tool("knotd"), "-c", str(work / "knot.conf")], "knotd.log", cpu)
    wait_udp(port, timeout=120)
    return port


# -------------------------------------------------------------------- config
def mamori_conf(
    path: Path,
    *,
    port: int,
    upstream: int,
    store: Path,
    workers: int,
    web_port: int,
    zones: list[tuple[str, Path]],
    query_log: bool = False,
    watch_interval: float = 0.0,
) -> Path:
    """A `mamori serve` configuration; /metrics on 127.0.0.1:*web_port*."""
    text = (
        f'[server]\nlisten = ["127.0.0.1:{port}"]\nrate_limit = 0\nstats_interval = 0\n'
        f"workers = {workers}\n"
        f'[upstream]\nservers = ["127.0.0.1:{upstream}"]\n'
        f'[store]\npath = "{store}/m.db"\nquery_log = {"true" if query_log else "false"}\n'
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{web_port}"\n'
        f"[policy]\nwatch_interval = {watch_interval}\n"
    )
    for name, file in zones:
        text += f'[[rpz]]\nname = "{name}"\nfile = "{file}"\nlog = false\n'
    path.write_text(text)
    return path


# ------------------------------------------------------------------ processes
def descendants(root: int) -> list[int]:
    """*root* and every process below it (children of children ...)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def worker_pids(log: Path) -> dict[int, int]:
    """Worker number -> pid, from the control plane's "worker N started (pid P)" lines."""
    text = log.read_text(errors="replace")
    return {int(n): int(p) for n, p in re.findall(r"worker (\d+) started \(pid (\d+)\)", text)}


def roles(root: int, log: Path) -> dict[int, str]:
    """pid -> "control" / "zygote" / "worker N" / "other" for the service under *root*."""
    workers = {pid: f"worker {n}" for n, pid in worker_pids(log).items()}
    out: dict[int, str] = {}
    for pid in descendants(root):
        if pid == root:
            out[pid] = "control"
        elif pid in workers:
            out[pid] = workers[pid]
        elif any(ppid_of(w) == pid for w in workers):
            out[pid] = "zygote"
        else:
            out[pid] = "other"
    return out


def ppid_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def smaps(pid: int) -> dict[str, float]:
    """Rss, Pss (and its anonymous and file-backed parts) and USS (Private_Clean +
    Private_Dirty) of *pid* in MB."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty"):
            kb[key] = int(value.split()[0])
    return {
        "rss": kb["Rss"] / 1024,
        "pss": kb["Pss"] / 1024,
        "pss_anon": kb.get("Pss_Anon", -1024) / 1024,
        "pss_file": kb.get("Pss_File", -1024) / 1024,
        "uss": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
    }


def cpu_of(pid: int, tid: int = 0) -> float:
    """utime + stime of *pid* (all its threads; only thread *tid* if given) in seconds;
    nan when it is gone."""
    user, system = cpu_split(pid, tid)
    return user + system


def cpu_split(pid: int, tid: int = 0) -> tuple[float, float]:
    """(utime, stime) of *pid* (or of its thread *tid*) in seconds; nan when it is gone."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan"), float("nan")
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def pin(pid: int, cpus: set[int]) -> None:
    """Pin one process (all its threads) to *cpus*."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


# -------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def metrics(web_port: int, timeout: float = 5.0) -> dict[str, float]:
    """/metrics as {"name{labels}": value}."""
    url = f"http://127.0.0.1:{web_port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def worker_values(m: dict[str, float], name: str) -> dict[int, float]:
    """{worker number: value} of a per-worker metric."""
    out = {}
    for key, value in m.items():
        if key.startswith(name + "{"):
            n = re.search(r'worker="(\d+)"', key)
            if n:
                out[int(n.group(1))] = value
    return out


def wait_metrics(web_port: int, timeout: float = 30.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return metrics(web_port, timeout=2.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --------------------------------------------------------------------- DNS
def query(name: str, qid: int) -> bytes:
    q = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in name.rstrip(".").split("."):
        q += bytes((len(label),)) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"


def first_nxdomain(port: int, name: str, t0: float, timeout: float, interval: float = 0.005):
    """Seconds from *t0* (monotonic) until a query for *name* is answered NXDOMAIN.

    One query every *interval* seconds from one socket; any NXDOMAIN answer to
    any of them counts. None after *timeout*.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        ids: set[int] = set()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            qid = secrets.randbelow(65536)
            ids.add(qid)
            s.sendto(query(name, qid), ("127.0.0.1", port))
            until = time.monotonic() + interval
            while (left := until - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(4096)
                except (TimeoutError, BlockingIOError):
                    break
                except OSError:
                    time.sleep(left)
                    break
                if len(data) >= 12 and data[3] & 0xF == 3 and int.from_bytes(data[:2]) in ids:
                    return time.monotonic() - t0
    return None


def answers_from_ports(port: int, name: str, sockets: int = 16) -> list[int]:
    """The rcode of *name* asked once from each of *sockets* source ports (-1: no answer).

    With SO_REUSEPORT the source ports spread the questions over the workers.
    """
    out = []
    for i in range(sockets):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1.0)
            s.sendto(query(name, i + 1), ("127.0.0.1", port))
            try:
                out.append(s.recv(4096)[3] & 0xF)
            except OSError:
                out.append(-1)
    return out


# ------------------------------------------------------------------- dnsperf
def dnsperf(port: int, qfile: Path, cpus: str, *args: str, timeout: float = 600) -> str:
    cmd = ["taskset", "-c", cpus, tool("dnsperf"), "-s", "127.0.0.1", "-p", str(port)]
    cmd += ["-d", str(qfile), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def perf_field(out: str, label: str) -> float:
    for line in out.splitlines():
        if line.strip().startswith(label):
            return float(line.split(":", 1)[1].split()[0])
    raise ValueError(f"dnsperf output has no {label!r}:\n{out}")


def rcodes(out: str) -> str:
    return next(
        (ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Response codes" in ln), ""
    )


def latencies_us(out: str) -> list[float]:
    """Per-query latencies (µs) of a `dnsperf -v` run, in the order dnsperf printed them."""
    lat = []
    for line in out.splitlines():
        if line.startswith(">"):
            try:
                lat.append(float(line.split()[-1]) * 1e6)
            except ValueError:
                continue
    return lat


def pct(values: list[float], q: float) -> float:
    """The *q* quantile of sorted *values* (nan when empty)."""
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def median(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")
