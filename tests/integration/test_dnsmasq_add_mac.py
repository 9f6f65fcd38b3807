"""Real dnsmasq with ``--add-mac`` in front of `mamori serve`: the phone's MAC address
names it, its group's policy applies, the query log shows it.

A MAC address needs a link: the test builds two network namespaces joined by a veth
pair (a "phone" with a fixed MAC at 192.0.2.2, a "router" at 192.0.2.1 running dnsmasq
and mamori on its own loopback). Nothing leaves them. It needs root (``ip netns``) and
is skipped without it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.support.mamori_proc import REPO, MamoriProcess
from tests.support.wait import until

pytestmark = pytest.mark.integration

PHONE_MAC = "a0:b1:c2:d3:e4:f5"
KIDS_RPZ = "$TTL 60\n@ SOA ns.k. h.k. 1 3600 600 86400 30\n@ NS ns.k.\nwww.example.test CNAME .\n"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces (ip netns)")
    tag = f"{os.getpid() % 100000}"
    phone, router = f"mamori-phone-{tag}", f"mamori-router-{tag}"
    try:
        _ip("netns", "add", phone)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot make a network namespace: {e.stderr.decode().strip()}")
    try:
        _ip("netns", "add", router)
        _ip("-n", phone, "link", "add", "veth0", "address", PHONE_MAC, "type", "veth",
            "peer", "name", "veth0", "netns", router)  # fmt: skip
        for ns, addr in ((phone, "192.0.2.2/24"), (router, "192.0.2.1/24")):
            _ip("-n", ns, "addr", "add", addr, "dev", "veth0")
            _ip("-n", ns, "link", "set", "veth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield phone, router
    finally:
        for ns in (phone, router):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_dnsmasq_add_mac_names_the_phone(tmp_path: Path, namespaces: tuple[str, str]) -> None:
    dnsmasq = require_binary("dnsmasq")
    dig = require_binary("dig")
    phone, router = namespaces
    (tmp_path / "kids.rpz").write_text(KIDS_RPZ)
    m = MamoriProcess(
        tmp_path, ["127.0.0.1:9"], allow=["127.0.0.0/8"], trust_client_mac=["127.0.0.1/32"],
        listen=["127.0.0.1:5353"],
        extra=f'[[group]]\nname = "kids"\nclient_ids = ["{PHONE_MAC}"]\n'
        f'[[rpz]]\nname = "kids.rpz"\nfile = "{tmp_path / "kids.rpz"}"\ngroups = ["kids"]\n',
    )  # fmt: skip
    err = (tmp_path / "mamori.stderr").open("wb")
    fwd_err = (tmp_path / "dnsmasq.stderr").open("wb")
    serve = subprocess.Popen(
        ["ip", "netns", "exec", router, sys.executable, "-m", "mamori", "serve", "--config",
         str(m.config)], stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    fwd = subprocess.Popen(
        ["ip", "netns", "exec", router, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null",
         "--no-resolv", "--no-hosts", "--server=127.0.0.1#5353", "--add-mac",
         "--listen-address=192.0.2.1", "--bind-interfaces", "--cache-size=0",
         f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--log-facility=-", "--log-queries"],
        stdout=subprocess.DEVNULL, stderr=fwd_err,
    )  # fmt: skip
    try:
        assert until(lambda: "serving DNS" in m.stderr() or serve.poll() is not None, 20)
        assert serve.poll() is None, m.stderr()

        def ask() -> str:
            out = subprocess.run(
                ["ip", "netns", "exec", phone, dig, "@192.0.2.1", "www.example.test", "A",
                 "+tries=1", "+time=2"], capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            return out

        # the first query may go out before dnsmasq has the phone's neighbour entry
        assert until(lambda: "status: NXDOMAIN" in ask(), 15), (
            tmp_path / "dnsmasq.stderr"
        ).read_text() + m.stderr()[-2000:]
        db = sqlite3.connect(m.db)
        try:
            assert until(lambda: db.execute(
                "SELECT count(*) FROM query_log WHERE device = ? AND client_group = 'kids'"
                " AND qname = 'www.example.test.' AND rcode = 3", (PHONE_MAC,)
            ).fetchone()[0] >= 1, 10)  # fmt: skip
        finally:
            db.close()
    finally:
        _stop(fwd)
        _stop(serve)
        err.close()
        fwd_err.close()
