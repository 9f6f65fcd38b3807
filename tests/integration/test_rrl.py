"""Response rate limiting against a real `mamori serve`: floods of identical UDP queries
from one address, answered at the rate, the rest dropped or slipped (TC=1); other
addresses, exempt prefixes and TCP unaffected; the counters on /metrics."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

RATE, WINDOW, NX_RATE = 5, 15, 3


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def flood(port: int, names: list[str], source: str, per_second: float = 500.0) -> dict[str, int]:
    """Send one A query per name in *names* (evenly, at *per_second*) from one socket
    bound to *source*; count what came back: full answers, TC=1 answers, nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.setblocking(False)
    answers: dict[int, dns.message.Message] = {}

    def drain() -> None:
        while True:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                return
            m = dns.message.from_wire(data)
            answers[m.id] = m

    try:
        start = time.monotonic()
        for i, name in enumerate(names):
            q = dns.message.make_query(name, "A", id=i + 1)
            s.sendto(q.to_wire(), ("127.0.0.1", port))
            drain()
            pause = start + (i + 1) / per_second - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        quiet = time.monotonic() + 1.0
        while time.monotonic() < quiet:
            before = len(answers)
            drain()
            if len(answers) != before:
                quiet = time.monotonic() + 1.0
            time.sleep(0.01)
    finally:
        s.close()
    tc = sum(1 for m in answers.values() if m.flags & dns.flags.TC)
    full = [m for m in answers.values() if not m.flags & dns.flags.TC]
    for m in answers.values():
        if m.flags & dns.flags.TC:
            assert not m.answer and not m.authority, "a slipped answer carries no records"
    return {
        "full": len(full),
        "tc": tc,
        "none": len(names) - len(answers),
        "noerror": sum(1 for m in full if m.rcode() == dns.rcode.NOERROR and m.answer),
        "nxdomain": sum(1 for m in full if m.rcode() == dns.rcode.NXDOMAIN),
    }


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=3) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_a_flood_of_identical_queries_is_limited_to_the_rate(
    tmp_path: Path, upstream: AuthServer, workers: int
) -> None:
    web = free_port()
    extra = (
        f"[rrl]\nresponses_per_second = {RATE}\nnxdomains_per_second = {NX_RATE}\n"
        f'window = {WINDOW}\nslip = 2\nipv4_prefix_length = 32\nexempt = ["127.0.0.3/32"]\n'
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\n'
    )
    m = MamoriProcess(
        tmp_path, [f"127.0.0.1:{upstream.port}"], extra=extra, workers=workers,
        allow=["127.0.0.0/8", "::1"],
    ).start()  # fmt: skip
    try:
        # 500 identical queries in one second from one address
        got = flood(m.port, ["www.example.test"] * 500, "127.0.0.1")
        assert got["full"] + got["tc"] + got["none"] == 500
        assert 1 <= got["full"] <= RATE * WINDOW, got
        assert got["full"] <= RATE + 2, got  # credit: RATE, plus what one second earns back
        assert got["noerror"] == got["full"]
        limited = 500 - got["full"]
        # slip = 2: every second limited answer is TC=1, the others are not sent
        assert abs(got["tc"] - limited / 2) <= 1, got
        assert abs(got["none"] - limited / 2) <= 1, got

        # another client address (its own /32) is not affected
        other = flood(m.port, ["www.example.test"] * RATE, "127.0.0.2")
        assert other["noerror"] == RATE, other

        # an exempt prefix is never limited
        exempt = flood(m.port, ["www.example.test"] * 200, "127.0.0.3")
        assert exempt["noerror"] == 200, exempt

        # TCP is never limited, even for the flooded address and name
        for _ in range(20):
            r = m.query("www.example.test", tcp=True, source="127.0.0.1")
            assert r.rcode() == dns.rcode.NOERROR and r.answer and not r.flags & dns.flags.TC

        # NXDOMAIN has its own account (per zone: random names share it), and its own rate
        names = [f"nx{i}.example.test" for i in range(30)]
        nx = flood(m.port, names, "127.0.0.1", per_second=100)
        assert 1 <= nx["nxdomain"] <= NX_RATE + 1, nx
        assert nx["tc"] >= 10 and nx["none"] >= 10, nx

        # the counters on /metrics: what the clients saw
        url = f"http://127.0.0.1:{web}/metrics"
        resp = (("kind", "responses"),)
        nxd = (("kind", "nxdomains"),)

        def counted() -> bool:
            s = scrape(url)
            return (
                s.get(("mamori_rrl_dropped_total", resp)) == got["none"]
                and s.get(("mamori_rrl_slipped_total", resp)) == got["tc"]
                and s.get(("mamori_rrl_dropped_total", nxd)) == nx["none"]
            )

        assert until(counted, 10), scrape(url)
        s = scrape(url)
        assert s[("mamori_rrl_slipped_total", nxd)] == nx["tc"]
        assert s[("mamori_rrl_limited_total", resp)] == got["none"] + got["tc"]
        assert s[("mamori_rrl_limited_total", (("kind", "errors"),))] == 0
        # one log line per prefix and kind per window
        logged = [ln for ln in m.stderr().splitlines() if "rrl: limiting 127.0.0.1/32" in ln]
        assert len(logged) == 2, logged
        assert "(responses) for www.example.test./A: over 5/s" in logged[0]
        assert "(nxdomains) for nx" in logged[1]
    finally:
        assert m.stop() == 0, m.stderr()


def test_off_by_default_nothing_is_limited(tmp_path: Path, upstream: AuthServer) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"]).start()
    try:
        got = flood(m.port, ["www.example.test"] * 300, "127.0.0.1", per_second=1000)
        assert got["noerror"] == 300, got
    finally:
        assert m.stop() == 0, m.stderr()


def test_reload_turns_it_on(tmp_path: Path, upstream: AuthServer) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"]).start()
    try:
        assert flood(m.port, ["www.example.test"] * 50, "127.0.0.1")["noerror"] == 50
        m.config.write_text(m.config.read_text() + "[rrl]\nresponses_per_second = 2\nslip = 0\n")
        m.signal(1)  # SIGHUP
        assert until(lambda: "configuration reloaded" in m.stderr(), 10)
        time.sleep(0.5)
        got = flood(m.port, ["www.example.test"] * 50, "127.0.0.1")
        assert got["full"] <= 4 and got["tc"] == 0, got
    finally:
        assert m.stop() == 0, m.stderr()
