"""Encrypted upstreams against Debian's Unbound serving DoT (``tls-port``) and DoH
(``https-port``, HTTP/2) with a certificate from a throwaway CA: answers come through on
one reused connection, a wrong CA or a wrong name is refused and logged, a connection
the server closed is opened again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from mamori import config
from mamori.config import UpstreamConfig
from mamori.config.values import upstreams
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline
from mamori.resolver.upstream import UpstreamError, UpstreamPool
from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.net import free_port
from tests.support.testca import TestCA
from tests.support.unbound import Unbound

pytestmark = pytest.mark.integration

NAME = "dns.example.test"
WWW = b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"  # www.example.test A IN


@dataclass
class Peer:
    dot: int
    doh: int
    ca: TestCA
    other_ca: TestCA


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    binary = require_binary("unbound")
    tmp = tmp_path_factory.mktemp("upstream-tls")
    ca = TestCA.make(tmp / "ca")
    cert, key = ca.issue(NAME)
    dot, doh = free_port(), free_port()
    server = (
        f"  interface: 127.0.0.1@{dot}\n  interface: 127.0.0.1@{doh}\n"
        f"  tls-port: {dot}\n  https-port: {doh}\n"
        f'  tls-service-key: "{key}"\n  tls-service-pem: "{cert}"\n'
        '  http-endpoint: "/dns-query"\n'
        "  tcp-idle-timeout: 1000\n"  # ms: Unbound closes idle connections (the reconnect test)
    )
    with AuthServer(ZONE, "example.test.") as auth:
        ub = Unbound(binary, tmp / "unbound", auth.port, server_extra=server).start("example.test")
        try:
            yield Peer(dot, doh, ca, TestCA.make(tmp / "other", "other"))
        finally:
            ub.stop()


def _pool(server: str, ca_file: Path | None) -> UpstreamPool:
    return UpstreamPool(
        UpstreamConfig(
            servers=upstreams([server], None, ""), timeout=3.0, attempts=1, ca_file=ca_file
        )
    )


def _addresses(resp: bytes) -> set[str]:
    m = dns.message.from_wire(resp)
    assert m.rcode() == dns.rcode.NOERROR
    return {rd.address for rrset in m.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset}


@pytest.mark.parametrize("transport", ["tls", "https"])
def test_answers_come_through_pipelined_on_one_connection(peer: Peer, transport: str) -> None:
    server = (f"tls://127.0.0.1:{peer.dot}#{NAME}" if transport == "tls"
              else f"https://127.0.0.1:{peer.doh}/dns-query#{NAME}")  # fmt: skip
    pool = _pool(server, peer.ca.cert)

    async def run() -> None:
        results = await asyncio.gather(*(pool.resolve(WWW, 0x0100, False) for _ in range(20)))
        for resp, name in results:
            assert _addresses(resp) == {"192.0.2.1", "192.0.2.2"}
            assert name == server  # the upstream as configured
        conn = pool.upstreams[0]._encrypted
        assert conn is not None and conn.uses == 20, "every query on the one connection"
        writer = conn.writer
        await pool.resolve(WWW, 0x0100, False)
        assert conn.writer is writer and conn.uses == 21  # reused, not reopened
        pool.close()
        await asyncio.sleep(0)  # the aborted sockets close on the next loop turn

    asyncio.run(run())


@pytest.mark.parametrize(
    ("server", "which_ca", "reason"),
    [
        ("tls://127.0.0.1:{dot}#" + NAME, "other", "unable to get local issuer certificate"),
        ("tls://127.0.0.1:{dot}#wrong.example.test", "ca", "Hostname mismatch"),
        ("https://127.0.0.1:{doh}/dns-query#" + NAME, "other", "unable to get local issuer"),
        ("https://127.0.0.1:{doh}/dns-query#wrong.example.test", "ca", "Hostname mismatch"),
        ("tls://127.0.0.1:{dot}#" + NAME, "system", "unable to get local issuer certificate"),
    ],
)
def test_a_wrong_ca_or_name_is_refused_and_logged(
    peer: Peer, caplog: pytest.LogCaptureFixture, server: str, which_ca: str, reason: str
) -> None:
    ca = {"ca": peer.ca.cert, "other": peer.other_ca.cert, "system": None}[which_ca]
    pool = _pool(server.format(dot=peer.dot, doh=peer.doh), ca)

    async def run() -> None:
        with pytest.raises(UpstreamError, match="certificate verify failed"):
            await pool.resolve(WWW, 0x0100, False)
        pool.close()
        await asyncio.sleep(0)  # the aborted sockets close on the next loop turn

    with caplog.at_level(logging.WARNING, "mamori.resolver.upstream"):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if "TLS certificate refused" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert reason in lines[0]
    where = "the system CAs" if ca is None else f"the CA file {ca}"
    assert where in lines[0] and (NAME in lines[0] or "wrong.example.test" in lines[0])


@pytest.mark.parametrize("transport", ["tls", "https"])
def test_a_connection_the_server_closed_is_opened_again(peer: Peer, transport: str) -> None:
    server = (f"tls://127.0.0.1:{peer.dot}#{NAME}" if transport == "tls"
              else f"https://127.0.0.1:{peer.doh}/dns-query#{NAME}")  # fmt: skip
    pool = _pool(server, peer.ca.cert)

    async def run() -> None:
        assert _addresses((await pool.resolve(WWW, 0x0100, False))[0])
        conn = pool.upstreams[0]._encrypted
        assert conn is not None
        for _ in range(100):  # Unbound's tcp-idle-timeout (1 s) closes it
            if not conn.is_open:
                break
            await asyncio.sleep(0.05)
        assert not conn.is_open
        assert _addresses((await pool.resolve(WWW, 0x0100, False))[0])
        assert conn.is_open and conn.uses == 1
        pool.close()
        await asyncio.sleep(0)  # the aborted sockets close on the next loop turn

    asyncio.run(run())


def test_the_pipeline_resolves_through_a_configured_doh_upstream(
    peer: Peer, tmp_path: Path
) -> None:
    cfg = config.loads(
        f'[server]\nrate_limit = 0\n[upstream]\nservers = ["https://127.0.0.1:{peer.doh}'
        f'/dns-query#{NAME}"]\nca_file = "{peer.ca.cert}"\n[store]\nqueue_size = 100\n',
        tmp_path / "m.toml",
    )
    answers: list[bytes] = []
    q = dns.message.make_query("www.example.test", "A")

    async def run() -> None:
        p = Pipeline(cfg, EventQueue(100))
        assert p.handle(q.to_wire(), ("127.0.0.1", 5353), lambda r, _a: answers.append(r),
                        False) is None  # fmt: skip
        for _ in range(200):
            if answers:
                break
            await asyncio.sleep(0.01)
        p.close()
        await asyncio.sleep(0)
        events = p.events.drain()
        assert events and events[0][6] == f"https://127.0.0.1:{peer.doh}/dns-query#{NAME}"

    asyncio.run(run())
    (resp,) = answers
    assert _addresses(resp) == {"192.0.2.1", "192.0.2.2"}
    assert dns.message.from_wire(resp).id == q.id


def test_a_silent_tls_upstream_times_out_and_the_next_one_answers(peer: Peer) -> None:
    import socket

    with socket.socket() as silent:  # accepts TCP connections, never speaks TLS
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        servers = [f"tls://127.0.0.1:{port}#{NAME}", f"tls://127.0.0.1:{peer.dot}#{NAME}"]
        pool = UpstreamPool(
            UpstreamConfig(
                servers=upstreams(servers, None, ""), timeout=0.5, attempts=2, ca_file=peer.ca.cert
            )
        )

        async def run() -> str:
            resp, name = await pool.resolve(WWW, 0x0100, False)
            assert _addresses(resp) == {"192.0.2.1", "192.0.2.2"}
            pool.close()
            await asyncio.sleep(0)
            return name

        assert asyncio.run(run()) == servers[1]
        stuck, good = pool.health()
        assert (stuck.errors, good.errors) == (1, 0) and good.srtt > 0
