"""TCP bounds against a real `mamori serve`: connections per client address, the read
timeout of a message begun, and a client that pipelines without reading its answers."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture
def upstream() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def connect(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def ask(s: socket.socket, name: str = "www.example.test", qid: int = 1) -> dns.message.Message:
    wire = dns.message.make_query(name, "A", id=qid).to_wire()
    s.sendall(struct.pack("!H", len(wire)) + wire)
    return dns.message.from_wire(read_message(s))


def read_message(s: socket.socket) -> bytes:
    head = recv_exactly(s, 2)
    return recv_exactly(s, struct.unpack("!H", head)[0])


def recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the server")
        out += chunk
    return out


def closed_by_server(s: socket.socket, wait: float = 3.0) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_per_client_address_are_bounded(tmp_path: Path, upstream: AuthServer) -> None:
    m = MamoriProcess(
        tmp_path, [f"127.0.0.1:{upstream.port}"], workers=1, tcp_max_per_client=3,
        allow=["127.0.0.0/8", "::1"],
    ).start()  # fmt: skip
    held: list[socket.socket] = []
    try:
        for _ in range(3):
            s = connect(m.port, "127.0.0.1")
            held.append(s)
            assert ask(s).rcode() == dns.rcode.NOERROR
        extra = connect(m.port, "127.0.0.1")  # accepted by the kernel, closed by mamori
        held.append(extra)
        assert closed_by_server(extra)
        other = connect(m.port, "127.0.0.2")  # another address: its own count
        held.append(other)
        assert ask(other).rcode() == dns.rcode.NOERROR
        held[0].close()  # one closed: room for one more, once the server has seen it

        def one_more() -> bool:
            again = connect(m.port, "127.0.0.1")
            held.append(again)
            try:
                return ask(again).rcode() == dns.rcode.NOERROR
            except (ConnectionError, TimeoutError):
                again.close()  # closed by mamori: the close above not seen yet
                return False

        assert until(one_more, 15)
        assert "tcp: 127.0.0.1 has 3 connections open (tcp_max_per_client)" in m.stderr()
    finally:
        for s in held:
            s.close()
        assert m.stop() == 0, m.stderr()


def test_a_message_trickled_past_the_read_timeout_closes_the_connection(
    tmp_path: Path, upstream: AuthServer
) -> None:
    m = MamoriProcess(
        tmp_path, [f"127.0.0.1:{upstream.port}"], tcp_read_timeout=1.0, tcp_idle_timeout=30,
    ).start()  # fmt: skip
    try:
        slow = connect(m.port, "127.0.0.1")
        wire = dns.message.make_query("www.example.test", "A").to_wire()
        msg = struct.pack("!H", len(wire)) + wire
        start = time.monotonic()
        slow.sendall(msg[:5])  # a message begun, never finished
        assert closed_by_server(slow, 5.0)
        assert 0.8 <= time.monotonic() - start < 4.0
        slow.close()
        # a client that is idle between whole messages keeps its connection
        idle = connect(m.port, "127.0.0.1")
        assert ask(idle, qid=1).rcode() == dns.rcode.NOERROR
        time.sleep(1.5)
        assert ask(idle, qid=2).rcode() == dns.rcode.NOERROR
        idle.close()
    finally:
        assert m.stop() == 0, m.stderr()


def test_a_client_that_does_not_read_its_answers_does_not_stop_the_others(
    tmp_path: Path, upstream: AuthServer
) -> None:
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], workers=1).start()
    try:
        with connect(m.port, "127.0.0.1") as s:
            assert ask(s).rcode() == dns.rcode.NOERROR  # in the cache now
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            wire = dns.message.make_query("www.example.test", "A").to_wire()
            msg = struct.pack("!H", len(wire)) + wire
            s.setblocking(False)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # pipeline queries, never read an answer
                try:
                    s.send(msg * 64)
                except BlockingIOError:
                    break  # the buffers between us are full
            assert time.monotonic() < deadline, "sending never blocked"
            # (that the server stops reading it is tests/resolver/test_tcp_bounds.py: how
            # much the kernel buffers meanwhile depends on its autotuning, not on us)
            # the service still answers everyone else
            with connect(m.port, "127.0.0.1") as other:
                assert ask(other).rcode() == dns.rcode.NOERROR
            assert m.query("www.example.test").rcode() == dns.rcode.NOERROR
    finally:
        assert m.stop() == 0, m.stderr()
