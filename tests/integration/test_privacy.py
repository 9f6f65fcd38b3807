"""``[store] client_addresses``: no client address in any file mamori writes (issue 15).

A real ``mamori serve`` with the console, passive DNS, an alert rule (webhook)
and the block page; a client bound to 127.0.0.77 (and one on ::1) asks
blocked and allowed names over UDP and TCP and reports a false positive;
then every file under the store directory (SQLite files with their -wal) and
the captured stderr are searched for the address, as text and packed.
Nothing else in the test uses 127.0.0.77: the upstream, the webhook, the web
and the block page listen on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.receivers import Webhook
from tests.support.wait import until

pytestmark = pytest.mark.integration

CLIENT = "127.0.0.77"
PACKED = socket.inet_aton(CLIENT)
# "::1" as a client in text, not as part of a listen address "[::1]:PORT"
V6_TEXT = re.compile(rb"(?<![\[\w:])::1(?![\]\w:])")


def _serve(
    tmp: Path, mode: str, upstream: int, hook: Webhook, **server: object
) -> tuple[MamoriProcess, int]:
    web, page = free_port(), free_port()
    (tmp / "phish.txt").write_text("mail.example.test\n")
    extra = (
        f'[web]\nenabled = true\nlisten = "127.0.0.1:{web}"\n'
        "[pdns]\nenabled = true\nflush_interval = 0.1\n"
        f'[blockpage]\nenabled = true\naddress = "127.0.0.1"\nlisten = ["127.0.0.1:{page}"]\n'
        f'[[feed]]\nname = "phish"\npath = "{tmp / "phish.txt"}"\nformat = "domains"\n'
        'category = "phishing"\n'
        f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        '[[alert]]\nname = "phishing-hit"\nwhen = "hit"\ncategory = ["phishing"]\n'
    )
    m = MamoriProcess(
        tmp, [f"127.0.0.1:{upstream}"], extra=extra, allow=["127.0.0.0/8", "::1"], **server
    )
    # the store in its own directory: the config and the captured stderr stay outside it
    store = tmp / "store"
    text = m.config.read_text().replace(f'path = "{m.db}"', f'path = "{store / "mamori.db"}"')
    m.config.write_text(text.replace("[store]\n", f'[store]\nclient_addresses = "{mode}"\n', 1))
    m.db = store / "mamori.db"
    return m.start(), page


def _ask(m: MamoriProcess, name: str, source: str, tcp: bool = False) -> dns.message.Message:
    host = "::1" if ":" in source else "127.0.0.1"
    q = dns.message.make_query(name, "A")
    if tcp:
        return dns.query.tcp(q, host, port=m.port, timeout=3, source=source)
    return dns.query.udp(q, host, port=m.port, timeout=3, source=source)


def _report(page: int, name: str) -> int:
    """The block page seen, then a false positive reported, from CLIENT."""
    conn = http.client.HTTPConnection("127.0.0.1", page, timeout=3, source_address=(CLIENT, 0))
    conn.request("GET", "/", headers={"Host": name})
    html = conn.getresponse().read().decode()
    conn.close()
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, html
    body = urllib.parse.urlencode({"name": name, "csrf": match[1], "comment": "my bank"})
    conn = http.client.HTTPConnection("127.0.0.1", page, timeout=3, source_address=(CLIENT, 0))
    conn.request(
        "POST", "/report", body,
        {"Host": name, "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    status = conn.getresponse().status
    conn.close()
    return status


def _traffic(m: MamoriProcess, page: int, hook: Webhook) -> None:
    assert until(lambda: m.query("mail.example.test").rcode() == 3, 20), m.stderr()  # feed in
    for tcp in (False, True):
        assert _ask(m, "www.example.test", CLIENT, tcp).answer  # allowed
        assert _ask(m, "mail.example.test", CLIENT, tcp).rcode() == 3  # the feed's NXDOMAIN
        assert _ask(m, "www.example.test", "::1", tcp).answer
        assert _ask(m, "mail.example.test", "::1", tcp).rcode() == 3
    assert _report(page, "mail.example.test") == 303
    assert until(lambda: hook.received, 10), m.stderr()
    assert until(lambda: _rows(m) >= 8, 10), m.stderr()


def _rows(m: MamoriProcess) -> int:
    with sqlite3.connect(m.db) as db:
        return int(db.execute("SELECT count(*) FROM query_log").fetchone()[0])


def _clients(m: MamoriProcess) -> set[str]:
    with sqlite3.connect(m.db) as db:
        return {c for (c,) in db.execute("SELECT DISTINCT client FROM query_log")}


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def _run(
    tmp: Path, mode: str, **server: object
) -> tuple[MamoriProcess, Webhook, bytes, dict[str, bytes]]:
    hook = Webhook()
    try:
        with AuthServer(ZONE, "example.test.") as up:
            m, page = _serve(tmp, mode, up.port, hook, **server)
            try:
                _traffic(m, page, hook)
                clients = _clients(m)
            finally:
                assert m.stop() == 0, m.stderr()
    finally:
        hook.close()
    files = _files(m.db.parent)
    assert "mamori.db" in files and "reports.sqlite" in files and "alerts.sqlite" in files
    assert any(name.endswith("-wal") for name in files) or clients, files.keys()
    return m, hook, m.stderr_path.read_bytes(), files


def _assert_absent(where: str, data: bytes, *needles: bytes) -> None:
    for needle in needles:
        assert needle not in data, f"{needle!r} found in {where}"
    assert not V6_TEXT.search(data), f"::1 found in {where}"


@pytest.mark.parametrize("workers", [1, 2])
def test_none_keeps_no_client_address(tmp_path: Path, workers: int) -> None:
    """With workers the events cross to the control plane in memory; nobody else writes."""
    m, hook, stderr, files = _run(tmp_path, "none", workers=workers)
    for name, data in files.items():
        _assert_absent(name, data, CLIENT.encode(), PACKED)
    _assert_absent("stderr", stderr, CLIENT.encode(), PACKED)
    _assert_absent("webhook", repr(hook.received).encode(), CLIENT.encode())
    assert b"client - (mail.example.test): rpz" in stderr  # the BIND-style hit line
    with sqlite3.connect(m.db) as db:
        assert {c for (c,) in db.execute("SELECT DISTINCT client FROM query_log")} == {"-"}
    with sqlite3.connect(m.db.parent / "reports.sqlite") as db:
        assert db.execute("SELECT client, name FROM reports").fetchall() == [
            ("-", "mail.example.test")
        ]
    assert hook.received[0]["details"]["client"] == "-"


def test_truncate_keeps_the_network_only(tmp_path: Path) -> None:
    m, hook, stderr, files = _run(tmp_path, "truncate")
    for name, data in files.items():
        _assert_absent(name, data, CLIENT.encode(), PACKED)
    _assert_absent("stderr", stderr, CLIENT.encode(), PACKED)
    net = str(ipaddress.ip_network(f"{CLIENT}/24", strict=False).network_address)
    assert net == "127.0.0.0"
    with sqlite3.connect(m.db) as db:
        assert {c for (c,) in db.execute("SELECT DISTINCT client FROM query_log")} == {net, "::"}
    with sqlite3.connect(m.db.parent / "reports.sqlite") as db:
        assert db.execute("SELECT client FROM reports").fetchall() == [(net,)]
    assert f"client {net} (mail.example.test): rpz".encode() in stderr
    assert {a["details"]["client"] for a in hook.received} <= {net, "::"}


def test_full_is_the_default(tmp_path: Path) -> None:
    """The control: the same run with "full" does write the address (the search works)."""
    m, _hook, stderr, files = _run(tmp_path, "full")
    assert CLIENT.encode() in files["mamori.db"] + files.get("mamori.db-wal", b"")
    assert f"client {CLIENT} (mail.example.test): rpz".encode() in stderr
    assert V6_TEXT.search(stderr)
    with sqlite3.connect(m.db.parent / "reports.sqlite") as db:
        assert db.execute("SELECT client FROM reports").fetchall() == [(CLIENT,)]
    # erasure: mamori store forget-client leaves nothing of the address in the files
    out = subprocess.run(
        [sys.executable, "-m", "mamori", "store", "forget-client", CLIENT, "--config",
         str(m.config)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # mamori.db: its 4 query-log rows and its one row of blocked queries per hour
    assert "mamori.db: 5 rows deleted" in out and "reports.sqlite: 1 rows deleted" in out, out
    assert re.search(r"alerts.sqlite: [1-9]\d* rows deleted", out), out
    for name, data in _files(m.db.parent).items():
        assert CLIENT.encode() not in data and PACKED not in data, name
    with sqlite3.connect(m.db) as db:  # the others' rows stay
        assert {c for (c,) in db.execute("SELECT DISTINCT client FROM query_log")} == {
            "127.0.0.1",
            "::1",
        }
