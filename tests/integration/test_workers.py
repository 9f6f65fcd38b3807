"""`mamori serve` with ``workers = 2``: the acceptance tests of the control/data plane split.

Real processes on 127.0.0.1 only: mamori (control plane, zygote, two workers),
Debian's BIND as the primary of a transferred policy zone, Debian's Unbound as
the secondary of a published dataset, a feed host over HTTP, a webhook. Every
query that checks a policy is sent from a new UDP socket (a new source port),
so SO_REUSEPORT spreads the queries over both workers; a check of "both
workers" is a few hundred such queries that must all give the same answer.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import require_binary
from tests.support.authserver import AuthServer
from tests.support.bind import Bind
from tests.support.feedserver import FeedServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.receivers import Webhook
from tests.support.unbound import Unbound
from tests.support.wait import until
from tests.support.workers import (
    Ledger,
    Sample,
    alive,
    ask,
    burst,
    children,
    lines_matching,
    log_time,
    per_worker,
    scrape,
    service_tree,
    socket_holders,
)

pytestmark = pytest.mark.integration

NXDOMAIN, NOERROR = dns.rcode.NXDOMAIN, dns.rcode.NOERROR
BOTH = 300  # queries from as many source ports: every worker gets its share
PROPAGATION = 1.0  # seconds from a new policy version in the control plane to every worker

UPSTREAM_ZONE = """
$TTL 300
@      IN SOA ns1 hostmaster 1 3600 600 86400 60
@      IN NS ns1
ns1    IN A 127.0.0.1
www    IN A 192.0.2.1
local  IN A 192.0.2.10
feed1  IN A 192.0.2.11
feed2  IN A 192.0.2.12
xfr1   IN A 192.0.2.13
xfr2   IN A 192.0.2.14
hup1   IN A 192.0.2.15
hup2   IN A 192.0.2.16
"""


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(UPSTREAM_ZONE, "example.test.") as srv:
        yield srv


def _rpz(name: str, serial: int, rules: str) -> str:
    return (
        f"$TTL 60\n$ORIGIN {name}.\n"
        f"@ SOA ns.{name}. hostmaster.{name}. {serial} 3600 60 86400 30\n"
        "@ NS localhost.\n" + rules
    )


def _mamori(tmp: Path, upstream: AuthServer, extra: str) -> MamoriProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return MamoriProcess(tmp, [f"127.0.0.1:{upstream.port}"], extra=extra, workers=2)


def _cli(m: MamoriProcess, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", *args, "--config", str(m.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def _rcodes(samples: list[Sample]) -> Counter[str]:
    return Counter("timeout" if s.rcode is None else dns.rcode.to_text(s.rcode) for s in samples)


def _all(samples: list[Sample], rcode: int) -> bool:
    return all(s.rcode == rcode for s in samples)


def _rcode_at(port: int, name: str) -> int:
    q = dns.message.make_query(name, "A")
    return int(dns.query.udp(q, "127.0.0.1", port=port, timeout=3).rcode())


def _worker_pids(m: MamoriProcess) -> dict[int, int]:
    """Worker number -> pid, from the latest "worker N started (pid P)" lines."""
    return {
        int(x.group(1)): int(x.group(2))
        for x in lines_matching(m.stderr(), r"worker (\d+) started \(pid (\d+)\)")
    }


def _processes_of(config: Path) -> list[int]:
    """Every process whose command line names *config* (the service, its zygote, workers,
    feed updates ...)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and alive(int(d.name)):
            try:
                cmdline = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(config) in cmdline.split("\0"):
                out.append(int(d.name))
    return out


def _only_the_service_runs(m: MamoriProcess) -> bool:
    """No feed update or dataset compile (child processes) is running."""
    assert m.proc is not None
    zygote, workers = service_tree(m.proc.pid)
    return set(_processes_of(m.config)) == {m.proc.pid, zygote, *workers}


def _both_workers_serving(m: MamoriProcess, web: int) -> bool:
    s = scrape(web)
    return per_worker(s, "mamori_worker_up") == {"1": 1.0, "2": 1.0}


def _versions_agree(web: int) -> bool:
    """Both workers run the control plane's newest policy version (/metrics)."""
    s = scrape(web)
    v = s[("mamori_policy_version", ())]
    return per_worker(s, "mamori_worker_policy_version") == {"1": v, "2": v}


def _queries_by_worker(web: int) -> dict[str, float]:
    return per_worker(scrape(web), "mamori_worker_queries_total")


def _spread(web: int, before: dict[str, float], sent: int) -> dict[str, float]:
    """Queries each worker received since *before*, once all *sent* are counted and each
    worker reported some (their counters come home on their own schedule)."""
    got: dict[str, float] = {}

    def counted() -> bool:
        now = _queries_by_worker(web)
        got.update({w: now[w] - before.get(w, 0) for w in now})
        return sum(got.values()) >= sent and all(n > 0 for n in got.values())

    assert until(counted, 10), got
    return got


def _all_answer(
    m: MamoriProcess, web: int, name: str, rcode: int, ledger: Ledger
) -> dict[str, float]:
    """BOTH queries for *name* from as many source ports: all *rcode*, both workers asked."""
    before = _queries_by_worker(web)
    samples = burst(m.port, name, BOTH, ledger)
    same = _all(samples, rcode)
    assert same, f"{name}: {_rcodes(samples)}"
    spread = _spread(web, before, BOTH)
    assert all(n > 0 for n in spread.values()) and len(spread) == 2, spread
    return spread


def _watch_change(
    m: MamoriProcess,
    name: str,
    trigger: Callable[[], None],
    version: str,
    ledger: Ledger,
    after: str = "",
    limit: float = 30.0,
) -> tuple[list[Sample], float]:
    """Make a change, then ask *name* (new socket each time) until BOTH answers in a row
    are NXDOMAIN. Returns the samples and when the control plane logged the new policy
    version (the first line matching *version*, after the first matching *after*)."""
    offset = len(m.stderr())
    trigger()
    samples: list[Sample] = []
    streak = 0
    deadline = time.monotonic() + limit
    while streak < BOTH and time.monotonic() < deadline and len(samples) < 200_000:
        s = ask(m.port, name, ledger, timeout=1.0)
        samples.append(s)
        streak = streak + 1 if s.rcode == NXDOMAIN else 0
    log = m.stderr()[offset:]
    brief = "\n".join(ln for ln in log.splitlines() if "rpz QNAME" not in ln)  # not the hits
    assert streak >= BOTH, f"{name} not blocked by every worker: {_rcodes(samples)}\n{brief}"
    assert all(s.rcode is not None for s in samples), _rcodes(samples)
    lines = log.splitlines()
    start = 0
    if after:
        start = next(i for i, line in enumerate(lines) if re.search(after, line))
    line = next(ln for ln in lines[start:] if re.search(version, ln))
    return samples, log_time(line)


def _assert_propagated(samples: list[Sample], applied: float, what: str) -> float:
    """No answer with the old policy to a query sent later than PROPAGATION seconds after
    the control plane logged the new version (*applied*); returns the measured delay: from
    *applied* to the last answer with the old policy (0 when none came after it)."""
    stale = [s for s in samples if s.rcode != NXDOMAIN]
    late = [s for s in stale if s.received > applied]
    delay = max((s.received - applied for s in late), default=0.0)
    assert all(s.sent - applied < PROPAGATION for s in stale), (
        f"{what}: a worker answered with the old policy {delay:.3f}s after the control"
        f" plane applied the new one ({len(stale)} old answers of {len(samples)})"
    )
    print(
        f"{what}: {len(samples)} queries, {len(late)} old answers after the new version;"
        f" every worker answers with it {delay * 1000:.1f} ms after the control plane"
    )
    return delay


def _primary_of_rpz_test(zone_file: Path, notify_port: int) -> str:
    """named.conf: rpz.test from *zone_file*, IXFR from differences, NOTIFY to mamori."""
    return (
        f'zone "rpz.test" {{ type primary; file "{zone_file}"; allow-transfer {{ 127.0.0.1; }};'
        " ixfr-from-differences yes; max-ixfr-ratio unlimited; notify explicit;"
        f" also-notify {{ 127.0.0.1 port {notify_port}; }}; }};\n"
    )


# --------------------------------------------------------------------------- 1
def test_every_feature_at_once_with_two_workers(tmp_path: Path, upstream: AuthServer) -> None:
    """One mamori, one config, every feature; each policy change reaches both workers
    within a second, each zone change is transferred and announced once, and the
    query log holds every answered query exactly once."""
    named, unbound = require_binary("named"), require_binary("unbound")
    ledger = Ledger()
    # The feed host: one phishing name now, a second one later.
    www = tmp_path / "www"
    www.mkdir()
    (www / "phish.txt").write_text("feed1.example.test\n")
    feeds = FeedServer(www)
    hook = Webhook()
    # BIND: the primary of rpz.test (NOTIFY to mamori's DNS port, IXFR from differences).
    bind = Bind(named, tmp_path / "bind", "")
    zone_file = bind.dir / "rpz.test.zone"
    zone_file.write_text(_rpz("rpz.test", 1, "xfr1.example.test CNAME .\n"))
    # Unbound: a secondary of the published dataset (mamori NOTIFYs it).
    ub = Unbound(unbound, tmp_path / "unbound", upstream.port)
    web, blockpage, dnsbl = free_port(), free_port(), free_port()
    local = tmp_path / "local.rpz"
    local.write_text(_rpz("local.rpz", 1, "local.example.test CNAME .\n"))
    extra = f"""
[policy]
watch_interval = 0.2
[web]
enabled = true
listen = "127.0.0.1:{web}"
[blockpage]
enabled = true
address = "127.0.0.1"
listen = ["127.0.0.1:{blockpage}"]
[pdns]
enabled = true
flush_interval = 0.2
[publish]
allow = ["127.0.0.1/32"]
notify = ["127.0.0.1:{ub.port}"]
[[rpz]]
name = "local.rpz"
file = "{local}"
[[rpz]]
name = "rpz.test"
primary = "127.0.0.1:{bind.port}"
[[feed]]
name = "phish"
url = "http://127.0.0.1:{feeds.port}/phish.txt"
format = "domains"
category = "phishing"
refresh = 60
[[dataset]]
name = "fleet"
categories = ["phishing"]
publish = true
[[dnsbl]]
zone = "dbl.test"
listen = ["127.0.0.1:{dnsbl}"]
feeds = ["phish"]
kind = "domain"
[[alert_sink]]
name = "hook"
type = "webhook"
url = "{hook.url}"
[[alert]]
name = "phishing-hit"
when = "hit"
category = ["phishing"]
"""
    m = _mamori(tmp_path / "m", upstream, extra)
    bind.zones = _primary_of_rpz_test(zone_file, m.port)
    ub.extra = (
        f'rpz:\n  name: "fleet.datasets.mamori."\n  primary: 127.0.0.1@{m.port}\n'
        f'  zonefile: "{ub.dir / "fleet.zone"}"\n'
    )
    # The feed and the dataset as they are before the service starts (the refresh is
    # at least 60 s: the update during the test is run the same way, by the CLI).
    assert "phish: " in _cli(m, "feeds", "update")
    key = _cli(m, "keys", "add", "analyst")
    try:
        bind.start("rpz.test")
        m.start()
        assert until(lambda: ask(m.port, "xfr1.example.test", ledger).rcode == NXDOMAIN, 20)
        ub.start()
        assert until(lambda: _both_workers_serving(m, web)), m.stderr()
        _every_feature_works(m, ledger, ub, web, blockpage, dnsbl, hook, key)
        # The DNSBL zone is served by the workers, each on its own sockets, not the control.
        _zygote, workers = service_tree(m.proc.pid)  # type: ignore[union-attr]
        assert socket_holders(dnsbl) == {
            kind: sorted([w] for w in workers) for kind in ("udp 0100007F", "tcp 0100007F")
        }

        # -- a feed update: applied by both workers within a second
        _all_answer(m, web, "feed2.example.test", NOERROR, ledger)  # cached by both
        assert until(lambda: _only_the_service_runs(m), 30)  # the datasets' compile at start
        (www / "phish.txt").write_text("feed1.example.test\nfeed2.example.test\n")
        update: list[subprocess.Popen[str]] = []

        def run_update() -> None:
            cmd = [sys.executable, "-m", "mamori", "feeds", "update", "--config", str(m.config)]
            update.append(
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )

        samples, applied = _watch_change(
            m,
            "feed2.example.test",
            run_update,
            r"DEBUG mamori\.rpz: policy version \d+ \(reload\)",
            ledger,
            after=r"policy zone phish\.feeds\.mamori\. serial \d+: 2 rules",
        )
        out, _ = update[0].communicate(timeout=60)
        assert update[0].returncode == 0 and "+1 -0" in out, out
        _assert_propagated(samples, applied, "feed update")
        _all_answer(m, web, "feed2.example.test", NXDOMAIN, ledger)
        assert until(lambda: _versions_agree(web)), scrape(web)
        # the published dataset changed once: one new serial, one NOTIFY, one transfer
        assert until(lambda: _rcode_at(ub.port, "feed2.example.test") == NXDOMAIN, 20), m.stderr()
        assert until(lambda: _a(dnsbl, "feed2.example.test.dbl.test") == ["127.0.1.4"], 20)
        published = lines_matching(
            m.stderr(), r"zone fleet\.datasets\.mamori\. published: serial (\d+) -> (\d+)"
        )
        assert len(published) == 1, [p.group(0) for p in published]
        old, new = published[0].group(1), published[0].group(2)
        notify = rf"zone fleet\.datasets\.mamori\.: NOTIFY sent to 127\.0\.0\.1:{ub.port} \(serial"
        assert until(lambda: lines_matching(m.stderr(), notify + rf" {new}\)") != [])
        out_to_unbound = rf"transfer of fleet\.datasets\.mamori\. serial {new} to 127\.0\.0\.1: "
        assert until(lambda: lines_matching(m.stderr(), out_to_unbound) != [])

        # -- an IXFR from BIND: applied by both workers within a second
        _all_answer(m, web, "xfr2.example.test", NOERROR, ledger)

        def change_on_bind() -> None:
            zone_file.write_text(
                _rpz("rpz.test", 2, "xfr1.example.test CNAME .\nxfr2.example.test CNAME .\n")
            )
            bind.reload()

        samples, applied = _watch_change(
            m,
            "xfr2.example.test",
            change_on_bind,
            r"DEBUG mamori\.rpz: policy version \d+ \(transfer of rpz\.test\.\)",
            ledger,
        )
        _assert_propagated(samples, applied, "IXFR")
        _all_answer(m, web, "xfr2.example.test", NXDOMAIN, ledger)
        _all_answer(m, web, "xfr1.example.test", NXDOMAIN, ledger)
        assert until(lambda: _versions_agree(web)), scrape(web)

        # -- exactly one transfer per change (not one per worker), one NOTIFY per change
        err = m.stderr()
        assert len(lines_matching(err, r"zone rpz\.test\.: AXFR from ")) == 1, err
        assert len(lines_matching(err, r"zone rpz\.test\.: IXFR from .*serial 1 -> 2")) == 1
        assert len(lines_matching(bind.log, r"transfer of 'rpz\.test/IN': AXFR started")) == 1
        ixfrs = lines_matching(bind.log, r"transfer of 'rpz\.test/IN': IXFR started")
        assert len(ixfrs) == 1, bind.log
        assert len(lines_matching(err, notify + rf" {new}\)")) == 1, err
        assert len(lines_matching(err, out_to_unbound)) == 1, err
        assert int(new) > int(old)
    finally:
        code = m.stop()
        for stop in (ub.stop, bind.stop, feeds.close, hook.close):
            stop()
    assert code == 0, m.stderr()
    # -- the query log: every answered query once (the workers' last events included)
    assert not ledger.unanswered, ledger.unanswered
    db = sqlite3.connect(m.db)
    try:
        rows = Counter(dict(db.execute("SELECT qname, count(*) FROM query_log GROUP BY qname")))
    finally:
        db.close()
    ours = {q: n for q, n in rows.items() if q in ledger.answered}
    assert ours == dict(ledger.answered), {
        q: (rows.get(q, 0), n) for q, n in ledger.answered.items() if rows.get(q, 0) != n
    }
    assert set(rows) == set(ledger.answered), set(rows) - set(ledger.answered)


def _a(port: int, name: str) -> list[str]:
    r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
    return sorted(rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == 1)


def _http(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


def _every_feature_works(
    m: MamoriProcess,
    ledger: Ledger,
    ub: Unbound,
    web: int,
    blockpage: int,
    dnsbl: int,
    hook: Webhook,
    key: str,
) -> None:
    # each policy source blocks, on both workers; a clean name resolves
    for name in ("local.example.test", "xfr1.example.test", "feed1.example.test"):
        _all_answer(m, web, name, NXDOMAIN, ledger)
    _all_answer(m, web, "www.example.test", NOERROR, ledger)
    # Unbound answers from the published dataset (it has transferred it from mamori)
    assert until(lambda: _rcode_at(ub.port, "feed1.example.test") == NXDOMAIN, 20), m.stderr()
    assert _rcode_at(ub.port, "www.example.test") == NOERROR
    assert _rcode_at(ub.port, "local.example.test") == NOERROR  # not published
    # the DNSBL lists the feed's name, not the others
    assert until(lambda: _a(dnsbl, "feed1.example.test.dbl.test") == ["127.0.1.4"], 20)
    assert _a(dnsbl, "www.example.test.dbl.test") == []
    # passive DNS has the upstream's answers (COF API)
    cof = f"http://127.0.0.1:{web}/pdns/query/www.example.test"

    def recorded() -> bool:
        code, body = _http(cof, {"X-API-Key": key})
        rows = [json.loads(x) for x in body.splitlines() if x.strip()] if code == 200 else []
        return any(r["rrname"] == "www.example.test." and r["rrtype"] == "A" for r in rows)

    assert until(recorded, 15), _http(cof, {"X-API-Key": key})
    # the console's login page and /metrics
    code, html = _http(f"http://127.0.0.1:{web}/login")
    assert code == 200 and 'name="password"' in html, html[:500]
    s = scrape(web)
    assert s[("mamori_workers", ())] == 2
    assert s[("mamori_queries_total", ())] >= 4 * BOTH
    # the block page names what blocked the name
    code, html = _http(f"http://127.0.0.1:{blockpage}/", {"Host": "feed1.example.test"})
    assert code == 403 and 'id="source">phish<' in html and "phishing" in html, html
    code, html = _http(f"http://127.0.0.1:{blockpage}/", {"Host": "local.example.test"})
    assert code == 403 and 'id="source">local.rpz<' in html, html
    # the webhook got an alert for a hit
    assert until(lambda: any(a["alert"] == "phishing-hit" for a in hook.received), 15)
    alert = next(a for a in hook.received if a["alert"] == "phishing-hit")
    assert alert["details"]["name"] == "feed1.example.test", alert


# ----------------------------------------------------------------- 2, 3, 4, 5
def _small(
    tmp: Path, upstream: AuthServer, extra: str = "", flush_interval: float = 0.05
) -> tuple[MamoriProcess, int, Path]:
    """mamori with two workers, /metrics on its own port and a local policy zone;
    query events are sent home and written every *flush_interval* seconds."""
    web = free_port()
    local = tmp / "local.rpz"
    tmp.mkdir(parents=True, exist_ok=True)
    local.write_text(
        _rpz("local.rpz", 1, "local.example.test CNAME .\nhup1.example.test CNAME .\n")
    )
    conf = (
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\n'
        f'[[rpz]]\nname = "local.rpz"\nfile = "{local}"\n' + extra
    )
    m = _mamori(tmp, upstream, conf)
    text = m.config.read_text()
    assert text.count("flush_interval = 0.05\n") == 1
    m.config.write_text(
        text.replace("flush_interval = 0.05\n", f"flush_interval = {flush_interval}\n")
    )
    m.start()
    assert until(lambda: _both_workers_serving(m, web)), m.stderr()
    return m, web, local


def _assert_sockets_held_by(port: int, workers: list[int]) -> None:
    """Each listening socket on *port* (UDP and TCP, IPv4 and IPv6) is held by exactly
    one process, a worker, and each worker holds one of each kind."""
    holders = socket_holders(port)
    assert len(holders) == 4, holders
    for kind, socks in holders.items():
        assert socks == sorted([w] for w in workers), (kind, socks, workers)


def test_a_killed_worker_is_restarted_and_every_query_is_answered_within_a_second(
    tmp_path: Path, upstream: AuthServer
) -> None:
    m, web, _local = _small(tmp_path, upstream)
    ledger = Ledger()
    try:
        zygote, workers = service_tree(m.proc.pid)  # type: ignore[union-attr]
        pids = _worker_pids(m)
        assert sorted(pids.values()) == workers
        _assert_sockets_held_by(m.port, workers)
        victim, survivor = pids[1], pids[2]
        os.kill(victim, signal.SIGKILL)
        killed = time.time()
        # queries from many source ports until BOTH in a row are answered
        samples: list[Sample] = []
        streak = 0
        deadline = time.monotonic() + 15
        while streak < BOTH and time.monotonic() < deadline:
            s = ask(m.port, "www.example.test", ledger, timeout=0.25)
            samples.append(s)
            streak = streak + 1 if s.rcode == NOERROR else 0
        lost = [s for s in samples if s.rcode is None]
        assert streak >= BOTH, f"answers did not resume: {_rcodes(samples)}"
        assert all(s.sent - killed < 1.0 for s in lost), [round(s.sent - killed, 3) for s in lost]
        # restarted, and said so: in the log and on /metrics
        assert until(lambda: _worker_pids(m)[1] != victim, 15), m.stderr()
        restarted = _worker_pids(m)[1]
        err = m.stderr()
        assert f"worker 1 (pid {victim}) killed by SIGKILL: restarting it" in err, err
        assert f"worker 1 started (pid {restarted})" in err
        assert children(zygote) == sorted([restarted, survivor])
        assert until(lambda: _both_workers_serving(m, web)), scrape(web)
        s = scrape(web)
        assert per_worker(s, "mamori_worker_restarts_total") == {"1": 1.0, "2": 0.0}
        assert per_worker(s, "mamori_worker_backoff_seconds") == {"1": 0.0, "2": 0.0}
        # nobody kept the dead worker's sockets: the kernel spreads over live workers only
        _assert_sockets_held_by(m.port, [restarted, survivor])
        # ... so every query is answered, by both workers, the new one with the policy
        _all_answer(m, web, "www.example.test", NOERROR, ledger)
        _all_answer(m, web, "local.example.test", NXDOMAIN, ledger)
        assert until(lambda: _versions_agree(web)), scrape(web)
    finally:
        code = m.stop()
    assert code == 0, m.stderr()


def test_a_worker_that_keeps_dying_is_backed_off_and_reported(
    tmp_path: Path, upstream: AuthServer
) -> None:
    hook = Webhook()
    extra = (
        f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        '[[alert]]\nname = "crashing"\nwhen = "worker_restarts"\nseverity = "critical"\n'
    )
    m, web, _local = _small(tmp_path, upstream, extra)
    survivor = _worker_pids(m)[2]
    # load from many source ports all along (several clients: one waiting on a query
    # lost with a killed worker does not stop the others)
    stop = threading.Event()
    loads: list[list[Sample]] = [[] for _ in range(4)]

    def load(samples: list[Sample]) -> None:
        own = Ledger()
        while not stop.is_set() and len(samples) < 100_000:
            samples.append(ask(m.port, "www.example.test", own, timeout=0.2))

    loaders = [threading.Thread(target=load, args=(x,), daemon=True) for x in loads]
    # the supervisor's own line (the alert's log line quotes the same message)
    backoff = (
        r"mamori\.supervisor: worker 1 \(pid (\d+)\) killed by SIGKILL:"
        r" (\d+) restarts in 30s, next start in 1s"
    )
    killed: list[int] = []
    try:
        for t in loaders:
            t.start()
        started = time.time()
        for _ in range(8):  # more than 3 restarts in 30 s: the 4th death is backed off
            pid = _worker_pids(m)[1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

            def replaced_or_backed_off(pid: int = pid) -> bool:
                return bool(lines_matching(m.stderr(), backoff)) or _worker_pids(m)[1] != pid

            assert until(replaced_or_backed_off, 10), m.stderr()
            if lines_matching(m.stderr(), backoff):
                break
        (match,) = lines_matching(m.stderr(), backoff)
        assert (len(killed), int(match.group(1)), match.group(2)) == (4, killed[-1], "4")
        backed_off = log_time(match.string)
        s = scrape(web)
        assert per_worker(s, "mamori_worker_backoff_seconds")["1"] > 0, s
        assert per_worker(s, "mamori_worker_backoff_seconds")["2"] == 0
        assert per_worker(s, "mamori_worker_restarts_total") == {"1": 4.0, "2": 0.0}
        # reported to the alert rules: the webhook gets it
        assert until(lambda: any(a["alert"] == "crashing" for a in hook.received), 10)
        alert = next(a for a in hook.received if a["alert"] == "crashing")
        assert alert["subject"] == "worker 1" and alert["details"]["worker"] == "1", alert
        assert alert["severity"] == "critical"
        # the slot comes back after the delay, and serves
        assert until(lambda: _worker_pids(m)[1] not in killed, 10), m.stderr()
        (back,) = lines_matching(m.stderr(), rf"worker 1 started \(pid {_worker_pids(m)[1]}\)")
        assert 0.9 <= log_time(back.string) - backed_off < 3, back.string
        assert until(lambda: _both_workers_serving(m, web)), scrape(web)
        # serving again: no delay pending (an alert on backoff_seconds > 0 clears)
        assert until(
            lambda: per_worker(scrape(web), "mamori_worker_backoff_seconds") == {"1": 0.0, "2": 0.0}
        )
        n = len(loads[0])
        assert until(lambda: len(loads[0]) > n + 100, 10)  # some load on the returned slot
        stop.set()
        for t in loaders:
            t.join(10)
        # the other worker answered all along: never restarted, never quiet
        assert _worker_pids(m)[2] == survivor and alive(survivor)
        samples = sorted((x for load in loads for x in load), key=lambda x: x.sent)
        answers = sorted(x.received for x in samples if x.rcode is not None and x.sent >= started)
        gaps = [b - a for a, b in itertools.pairwise(answers)]
        assert answers and max(gaps) < 0.5, f"{max(gaps):.3f}s without an answer"
        # while slot 1 waited, only the other worker was there: every query answered
        waiting = [x for x in samples if backed_off <= x.sent < backed_off + 0.9]
        assert waiting and all(x.rcode == NOERROR for x in waiting), _rcodes(waiting)
        # the slot is back and answers its share again, with the policy
        ledger = Ledger()
        _all_answer(m, web, "www.example.test", NOERROR, ledger)
        _all_answer(m, web, "local.example.test", NXDOMAIN, ledger)
    finally:
        stop.set()
        for t in loaders:
            if t.is_alive():
                t.join(10)
        code = m.stop()
        hook.close()
    assert code == 0, m.stderr()


def test_sighup_reload_changes_both_workers_and_a_broken_zone_keeps_the_previous_version(
    tmp_path: Path, upstream: AuthServer
) -> None:
    # the zone file watcher is off: only SIGHUP reloads
    m, web, local = _small(tmp_path, upstream, "[policy]\nwatch_interval = 0\n")
    ledger = Ledger()
    try:
        _all_answer(m, web, "hup1.example.test", NXDOMAIN, ledger)
        _all_answer(m, web, "hup2.example.test", NOERROR, ledger)  # cached by both

        def edit_and_hup() -> None:
            rules = "hup1.example.test CNAME .\nhup2.example.test CNAME .\n"
            local.write_text(_rpz("local.rpz", 2, rules))
            m.signal(signal.SIGHUP)

        samples, applied = _watch_change(
            m, "hup2.example.test", edit_and_hup, r"policy version \d+ \(reload\)", ledger
        )
        _assert_propagated(samples, applied, "SIGHUP")
        assert until(lambda: "configuration reloaded" in m.stderr())
        _all_answer(m, web, "hup2.example.test", NXDOMAIN, ledger)
        _all_answer(m, web, "hup1.example.test", NXDOMAIN, ledger)
        assert until(lambda: _versions_agree(web)), scrape(web)
        # a broken zone: refused, the previous version keeps serving on both workers
        offset = len(m.stderr())
        local.write_text(_rpz("local.rpz", 3, "hup1.example.test CNAME .\n") + "@ SOA broken\n")
        m.signal(signal.SIGHUP)
        assert until(lambda: "configuration reloaded" in m.stderr()[offset:]), m.stderr()
        refused = "policy zone local.rpz. reload refused, previous version serving"
        assert refused in m.stderr()[offset:], m.stderr()[offset:]
        _all_answer(m, web, "hup2.example.test", NXDOMAIN, ledger)
        _all_answer(m, web, "hup1.example.test", NXDOMAIN, ledger)
        assert until(lambda: _versions_agree(web)), scrape(web)
        s = scrape(web)
        assert s[("mamori_policy_zone_serial", (("zone", "local.rpz."),))] == 2
    finally:
        code = m.stop()
    assert code == 0, m.stderr()


def test_sigterm_stops_every_process_and_flushes_the_query_log(
    tmp_path: Path, upstream: AuthServer
) -> None:
    # nothing is sent home or written before the stop: the log is the final drain's work
    m, _web, _local = _small(tmp_path, upstream, flush_interval=60)
    ledger = Ledger()
    try:
        parent = m.proc.pid  # type: ignore[union-attr]
        zygote, workers = service_tree(parent)
        assert len(workers) == 2
        assert sorted(_processes_of(m.config)) == sorted([parent, zygote, *workers])
        # answered queries, none of them sent home or written yet
        for i in range(100):
            assert ask(m.port, f"n{i}.example.test", ledger).rcode == NXDOMAIN
            assert ask(m.port, "local.example.test", ledger).rcode == NXDOMAIN
    finally:
        code = m.stop()
    assert code == 0, m.stderr()
    assert until(lambda: not _processes_of(m.config), 10), _processes_of(m.config)
    assert not any(alive(p) for p in (parent, zygote, *workers))
    err = m.stderr()
    assert "stopping: draining in-flight queries" in err
    assert "worker 1 stats:" in err and "worker 2 stats:" in err
    assert not lines_matching(err, r" (ERROR|CRITICAL) "), err
    db = sqlite3.connect(m.db)
    try:
        rows = dict(db.execute("SELECT qname, count(*) FROM query_log GROUP BY qname"))
    finally:
        db.close()
    assert rows == dict(ledger.answered)
    assert sum(rows.values()) == 200


# ------------------------------------------------- regressions (bugs these tests found)
def test_a_transfer_during_worker_start_up_logs_no_error(
    tmp_path: Path, upstream: AuthServer
) -> None:
    """A zone transferred right after the start (the usual case for a secondary) gives
    the starting workers no version they cannot map: no error in the log."""
    bind = Bind(require_binary("named"), tmp_path / "bind", "")
    zone_file = bind.dir / "rpz.test.zone"
    zone_file.write_text(_rpz("rpz.test", 1, "xfr1.example.test CNAME .\n"))
    extra = f'[[rpz]]\nname = "rpz.test"\nprimary = "127.0.0.1:{bind.port}"\n'
    m = _mamori(tmp_path / "m", upstream, extra)
    bind.zones = _primary_of_rpz_test(zone_file, m.port)
    ledger = Ledger()
    try:
        bind.start("rpz.test")
        m.start()
        assert until(lambda: ask(m.port, "xfr1.example.test", ledger).rcode == NXDOMAIN, 20)
        assert until(lambda: len(_worker_pids(m)) == 2)
        samples = burst(m.port, "xfr1.example.test", BOTH, ledger)
        assert _rcodes(samples) == {"NXDOMAIN": BOTH}  # both workers have the zone
        errors = lines_matching(m.stderr(), r" ERROR .*")
        assert not errors, "\n".join(e.group(0) for e in errors)
    finally:
        code = m.stop()
        bind.stop()
    assert code == 0, m.stderr()


def test_a_crash_loop_is_reported_even_while_another_alert_is_being_delivered(
    tmp_path: Path, upstream: AuthServer
) -> None:
    hook = Webhook(delay=2.5)  # a receiver that takes its time to answer
    extra = (
        f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        '[[alert]]\nname = "blocked"\nwhen = "hit"\n'
        '[[alert]]\nname = "crashing"\nwhen = "worker_restarts"\n'
    )
    m, _web, _local = _small(tmp_path, upstream, extra)
    try:
        for _ in range(3):  # three restarts: the next death is a crash loop
            pid = _worker_pids(m)[1]
            os.kill(pid, signal.SIGKILL)
            assert until(lambda pid=pid: _worker_pids(m).get(1) != pid, 10), m.stderr()
        # a policy hit: its alert is being delivered (2.5 s) when the worker dies again
        assert ask(m.port, "local.example.test", Ledger()).rcode == NXDOMAIN
        assert until(lambda: any(a["alert"] == "blocked" for a in hook.received), 10)
        os.kill(_worker_pids(m)[1], signal.SIGKILL)
        assert until(lambda: "next start in 1s" in m.stderr(), 10), m.stderr()
        # (the delivery in progress ends 2.5 s after it began; then it is the crash loop's turn)
        assert until(lambda: any(a["alert"] == "crashing" for a in hook.received), 6), (
            [a["alert"] for a in hook.received],
            m.stderr(),
        )
    finally:
        code = m.stop()
        hook.close()
    assert code == 0, m.stderr()
