"""The README's offline tour, run as a newcomer would: every line of its shell block,
in order, checked against what its comment claims.

The tour runs in a copy of ``examples/`` (so nothing is written into the
repository) with free ports in place of 5300/5353/8053; ``make`` runs the
repository's Makefile from that copy, and ``.venv/bin/mamori`` is this test's
virtualenv. A README line this test has no check for fails the test, so the
tour cannot drift from what is tested.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.conftest import require_binary
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent


def tour_lines() -> list[tuple[str, str]]:
    """(command, claim) per line of the README's offline tour block."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Offline") :]
    block = section[section.index("```sh\n") + 6 : section.index("\n```", section.index("```sh"))]
    out = []
    for line in block.splitlines():
        command, _, claim = line.partition("  #")
        if command.strip() and not command.lstrip().startswith("#"):
            out.append((command.strip(), claim.strip(" #")))
    return out


@dataclass
class Tour:
    dir: Path
    knot_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """A terminal-3 command of the tour, on this tour's ports and virtualenv."""
        command = command.replace("-p 5353", f"-p {self.dns_port}")
        command = command.replace(".venv/bin/mamori", f"{VENV}/bin/mamori")
        args = shlex.split(command)
        if args[0] == "dig":
            args[0] = require_binary("dig")
            args += ["+time=3", "+tries=2"]
        elif args[0] == "sqlite3":
            args[0] = require_binary("sqlite3")
        return subprocess.run(args, cwd=self.dir, capture_output=True, text=True, timeout=60)

    def start(self, command: str, log: str) -> Path:
        """A long-running ``make`` line (terminals 1 and 2), in its own process group."""
        args = shlex.split(command)
        assert args[0] == "make"
        stamp = VENV / ".installed-stamp"  # the virtualenv is there: make must not build it
        make = [require_binary("make"), "-f", str(REPO / "Makefile"), "-o", str(stamp), *args[1:]]
        make += [
            f"VENV={VENV}",
            f"DEMO_PORT={self.knot_port}",
            f"DEMO_DIR={self.dir / 'knot-run'}",
        ]
        path = self.dir / log
        with path.open("wb") as err:
            proc = subprocess.Popen(
                make, cwd=self.dir, stdout=err, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append(proc)
        return path

    def stop(self) -> None:
        for proc in reversed(self.procs):  # mamori first, then Knot
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # make and what it runs: its group
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


@pytest.fixture
def tour(tmp_path: Path) -> Iterator[Tour]:
    require_binary("knotd")
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=_not_the_sources)
    t = Tour(tmp_path)
    conf = tmp_path / "examples" / "offline" / "mamori.toml"
    text = conf.read_text()
    for old, new in (
        ("127.0.0.1:5353", f"127.0.0.1:{t.dns_port}"),
        ("[::1]:5353", f"[::1]:{t.dns_port}"),
        ("127.0.0.1:5300", f"127.0.0.1:{t.knot_port}"),
        ("127.0.0.1:8053", f"127.0.0.1:{t.web_port}"),
    ):
        assert old in text, f"examples/offline/mamori.toml no longer has {old}"
        text = text.replace(old, new)
    conf.write_text(text)
    try:
        yield t
    finally:
        t.stop()


def _not_the_sources(directory: str, names: list[str]) -> list[str]:
    """Leave out what a previous `make run` wrote into examples/ (stores, compiled zones)."""
    return [n for n in names if n.endswith((".db", ".sqlite", "-wal", "-shm")) or n in (
        "policy", "zones", "feeds", "web.secret", "initial-admin-password")]  # fmt: skip


# ---------------------------------------------------------------- the checks
def _dig(out: subprocess.CompletedProcess[str]) -> tuple[str, list[int], list[str], list[str]]:
    """(status, EDE codes, answer lines, authority lines) of dig's output."""
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    m = re.search(r"status: (\w+)", text)
    assert m is not None, text
    edes = [int(c) for c in re.findall(r"; EDE: (\d+)", text)]

    def section(name: str) -> list[str]:
        m = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", text, re.S)
        return [" ".join(x.split()) for x in m.group(1).splitlines()] if m else []

    return m.group(1), edes, section("ANSWER"), section("AUTHORITY")


def _ttl(line: str) -> int:
    return int(line.split()[1])


def _expect(status: str, edes: list[int], answer: list[str] | None = None) -> Check:
    def check(t: Tour, command: str, seen: dict[str, object]) -> None:
        got_status, got_edes, got_answer, _ = _dig(t.run(command))
        assert (got_status, got_edes) == (status, edes), command
        if answer is not None:
            assert [_data(x) for x in got_answer] == answer, (command, got_answer)

    return check


def _data(line: str) -> str:
    """``www.demo.test. 300 IN A 192.0.2.10`` -> ``www.demo.test. A 192.0.2.10``."""
    name, _, _, rtype, *rdata = line.split()
    return " ".join([name, rtype, *rdata])


def _start_knot(t: Tour, command: str, seen: dict[str, object]) -> None:
    log = t.start(command, "terminal-1.log")

    def serving() -> bool:
        try:
            q = dns.message.make_query("demo.test.", "SOA")
            return bool(dns.query.udp(q, "127.0.0.1", port=t.knot_port, timeout=0.3).answer)
        except Exception:
            return False

    assert until(serving, 20), log.read_text()


def _start_mamori(t: Tour, command: str, seen: dict[str, object]) -> None:
    log = t.start(command, "terminal-2.log")
    assert until(lambda: "serving DNS" in log.read_text(), 60), log.read_text()
    # The claim: it logs where the console is, and the admin password.
    assert until(lambda: f"console: http://127.0.0.1:{t.web_port}/" in log.read_text(), 20)
    assert "created user admin with password" in log.read_text()
    seen["log"] = log


def _www(t: Tour, command: str, seen: dict[str, object]) -> None:
    status, edes, answer, _ = _dig(t.run(command))
    assert (status, edes) == ("NOERROR", []) and [_data(x) for x in answer] == [
        "www.demo.test. A 192.0.2.10"
    ]
    ttl = _ttl(answer[0])
    if "www" in seen:  # the second time: from the cache, the TTL not higher
        assert ttl <= int(str(seen["www"])) <= 300
    seen["www"] = ttl


def _nxdomain_cached(t: Tour, command: str, seen: dict[str, object]) -> None:
    for _ in range(2):  # answered, then from the cache
        status, edes, answer, authority = _dig(t.run(command))
        assert (status, edes, answer) == ("NXDOMAIN", [], [])
        (soa,) = authority
        assert " SOA " in soa and _ttl(soa) <= 60  # the SOA minimum caps it


def _query_log(t: Tour, command: str, seen: dict[str, object]) -> None:
    wanted = [
        "127.0.0.1|malware.mamori-demo.test.|3|blocked|nxdomain",
        "127.0.0.1|phish.mamori-demo.test.|0|blocked|local-data",
        "127.0.0.1|www.demo.test.|0|resolved|",
        "127.0.0.1|www.demo.test.|0|cached|",
        "::1|alias.demo.test.|0|resolved|",
        "127.0.0.1|example.org.|5|resolved|upstream-refused",
        "127.0.0.2|www.demo.test.|5|refused|acl",
    ]

    def logged() -> bool:
        out = t.run(command)
        return out.returncode == 0 and all(w in out.stdout.splitlines() for w in wanted)

    assert until(logged, 15), t.run(command).stdout


def _pdns(t: Tour, command: str, seen: dict[str, object]) -> None:
    def recorded() -> bool:
        return t.run(command).returncode == 0  # exit 1 until the first write (2 s)

    assert until(recorded, 20)
    out = t.run(command).stdout
    assert "www.demo.test.  A  192.0.2.10" in out, out


Check = Callable[[Tour, str, dict[str, object]], None]
CHECKS: dict[str, Check] = {
    "make demo-upstream": _start_knot,
    "make run CONFIG=examples/offline/mamori.toml": _start_mamori,
    "dig @127.0.0.1 -p 5353 malware.mamori-demo.test": _expect("NXDOMAIN", [15], []),
    "dig @127.0.0.1 -p 5353 phish.mamori-demo.test": _expect(
        "NOERROR", [15], ["phish.mamori-demo.test. A 127.0.0.1"]
    ),
    "dig @127.0.0.1 -p 5353 tracker.mamori-demo.test": _expect("NOERROR", [15], []),
    "dig @127.0.0.1 -p 5353 www.demo.test": _www,
    "dig @::1 -p 5353 alias.demo.test +tcp": _expect(
        "NOERROR", [], ["alias.demo.test. CNAME www.demo.test.", "www.demo.test. A 192.0.2.10"]
    ),
    "dig @127.0.0.1 -p 5353 nonexistent.demo.test": _nxdomain_cached,
    "dig @127.0.0.1 -p 5353 example.org": _expect("REFUSED", [22], []),
    "dig @127.0.0.1 -p 5353 www.demo.test -b 127.0.0.2": _expect("REFUSED", [18], []),
    "sqlite3 examples/offline/mamori-offline.db 'SELECT client, qname, rcode, outcome, reason"
    " FROM query_log'": _query_log,
    ".venv/bin/mamori pdns query --config examples/offline/mamori.toml -r www.demo.test": _pdns,
}


def test_the_readme_offline_tour_does_what_it_says(tour: Tour) -> None:
    lines = tour_lines()
    unchecked = [c for c, _ in lines if c not in CHECKS]
    assert not unchecked, f"README tour lines without a check here: {unchecked}"
    assert {c for c, _ in lines} == set(CHECKS), "checks for lines the README no longer has"
    seen: dict[str, object] = {}
    for command, _claim in lines:
        CHECKS[command](tour, command, seen)
    tour.stop()  # "Stop with Ctrl-C or SIGTERM": the service drains and exits cleanly
    log = Path(str(seen["log"])).read_text()
    assert "stopping: draining in-flight queries" in log and "Traceback" not in log, log
