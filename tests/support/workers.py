"""Looking at a `mamori serve` with worker processes from the outside (Linux /proc).

The process tree (control plane -> zygote -> workers), which process holds
each listening socket, queries from many source ports (a new UDP socket per
query, so SO_REUSEPORT spreads them over the workers), the service's log
lines with their times, and /metrics samples.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dns.exception
import dns.message
import dns.query
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


# ------------------------------------------------------------------ processes
def children(pid: int) -> list[int]:
    """Live (not zombie) children of *pid*, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            out.append(int(d.name))
    return sorted(out)


def alive(pid: int) -> bool:
    """Is *pid* a process that is not a zombie?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def service_tree(parent: int) -> tuple[int, list[int]]:
    """(zygote pid, worker pids) of the `mamori serve` process *parent*.

    The zygote is the child forked from it (the same command line; feed updates and
    other helpers are children with their own), the workers are the zygote's children.
    """
    (zygote,) = [c for c in children(parent) if _cmdline(c) == _cmdline(parent)]
    return zygote, children(zygote)


# -------------------------------------------------------------------- sockets
def _inodes(port: int) -> dict[int, str]:
    """Listening sockets on *port* (any loopback address): inode -> "udp 127.0.0.1" etc."""
    out = {}
    for proto in ("udp", "udp6", "tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            addr, hexport = f[1].rsplit(":", 1)
            if int(hexport, 16) != port:
                continue
            if proto.startswith("tcp") and f[3] != "0A":  # LISTEN only
                continue
            out[int(f[9])] = f"{proto} {addr}"
    return out


def socket_holders(port: int) -> dict[str, list[list[int]]]:
    """For each listening socket kind on *port*: the pids holding each socket of that kind.

    ``{"udp 0100007F": [[worker1], [worker2]], ...}``: one inner list per socket.
    """
    inodes = _inodes(port)
    held: dict[int, set[int]] = {i: set() for i in inodes}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fds = list((d / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inode = int(link[8:-1])
                if inode in held:
                    held[inode].add(int(d.name))
    out: dict[str, list[list[int]]] = {}
    for inode, kind in inodes.items():
        out.setdefault(kind, []).append(sorted(held[inode]))
    for socks in out.values():
        socks.sort()
    return out


# -------------------------------------------------------------------- queries
@dataclass
class Ledger:
    """The queries a test sent to mamori's resolver port and got an answer to, by qname."""

    answered: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Sample:
    sent: float  # time.time() before sending
    received: float  # after the answer (or the timeout)
    rcode: int | None  # None: no answer within the timeout


def ask(port: int, name: str, ledger: Ledger, timeout: float = 2.0) -> Sample:
    """One A query from a new UDP socket (a new source port)."""
    q = dns.message.make_query(name, "A")
    sent = time.time()
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)
    except dns.exception.Timeout:
        ledger.unanswered[name.lower().rstrip(".") + "."] += 1
        return Sample(sent, time.time(), None)
    ledger.answered[name.lower().rstrip(".") + "."] += 1
    return Sample(sent, time.time(), r.rcode())


def burst(port: int, name: str, n: int, ledger: Ledger, timeout: float = 2.0) -> list[Sample]:
    """*n* queries for *name*, each from its own socket, one after the other."""
    return [ask(port, name, ledger, timeout) for _ in range(n)]


# ------------------------------------------------------------------------ log
def log_time(line: str) -> float:
    """UNIX time of a mamori log line (``2026-01-01 12:00:00,123 INFO ...``, local time)."""
    m = _LOG_TIME.match(line)
    if m is None:
        raise ValueError(f"not a log line: {line!r}")
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def lines_matching(text: str, pattern: str) -> list[re.Match[str]]:
    """Every log line of *text* that *pattern* (a regular expression) matches, in order."""
    rx = re.compile(pattern)
    return [m for line in text.splitlines() if (m := rx.search(line)) is not None]


# -------------------------------------------------------------------- metrics
def scrape(port: int) -> Samples:
    """/metrics of the console on 127.0.0.1:*port*: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def per_worker(samples: Samples, name: str) -> dict[str, float]:
    """A per-worker metric as {worker number: value}."""
    return {
        dict(labels)["worker"]: v
        for (n, labels), v in samples.items()
        if n == name and "worker" in dict(labels)
    }
