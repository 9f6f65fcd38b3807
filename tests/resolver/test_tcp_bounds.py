"""TCP connection bounds (server.TcpConnection) on fake transports: per-client counts,
the read timeout of a message begun, reading paused while answers wait to be sent."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import dns.message

from mamori.resolver.server import TcpConnection, TcpListener


class Echo:
    def handle(self, data: bytes, addr: Any, reply: Any, tcp: bool) -> bytes | None:
        return data


class FakeTransport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = b""
        self.reading = True
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return self.peer if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def abort(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


def open_conn(lst: TcpListener, ip: str) -> tuple[TcpConnection, FakeTransport]:
    conn = lst.factory()
    tr = FakeTransport((ip, 40000))
    conn.connection_made(tr)  # type: ignore[arg-type]
    return conn, tr


def test_connections_per_client_address_are_counted_and_released() -> None:
    async def run() -> None:
        lst = TcpListener(Echo(), 10.0, 100, max_per_client=2)
        a1, t1 = open_conn(lst, "192.0.2.1")
        _a2, t2 = open_conn(lst, "192.0.2.1")
        _, t3 = open_conn(lst, "192.0.2.1")
        _, t4 = open_conn(lst, "192.0.2.2")
        assert not t1.closed and not t2.closed and t3.closed and not t4.closed
        assert lst.per_client == {"192.0.2.1": 2, "192.0.2.2": 1}
        assert lst.refused_per_client == 1
        a1.connection_lost(None)
        _, t5 = open_conn(lst, "192.0.2.1")
        assert not t5.closed
        for c in list(lst.connections):
            c.connection_lost(None)
        assert lst.per_client == {} and not lst.connections

    asyncio.run(run())


def test_a_message_begun_must_arrive_whole_within_the_read_timeout() -> None:
    async def run() -> None:
        lst = TcpListener(Echo(), 30.0, 100, read_timeout=0.2)
        conn, tr = open_conn(lst, "192.0.2.1")
        wire = dns.message.make_query("www.example.test", "A").to_wire()
        msg = struct.pack("!H", len(wire)) + wire
        conn.data_received(msg)  # whole: no read timer
        assert conn.reading is None and tr.written
        conn.data_received(msg[:5])  # begun
        await asyncio.sleep(0.1)
        conn.data_received(msg[5:8])  # more bytes do not restart the clock
        await asyncio.sleep(0.15)
        assert tr.closed and lst.read_timeouts == 1
        conn.connection_lost(None)

        conn, tr = open_conn(lst, "192.0.2.1")
        conn.data_received(msg[:5])
        await asyncio.sleep(0.1)
        conn.data_received(msg[5:])  # completed in time
        await asyncio.sleep(0.2)
        assert not tr.closed and conn.reading is None
        conn.connection_lost(None)

    asyncio.run(run())


def test_reading_pauses_while_answers_wait_to_be_sent() -> None:
    async def run() -> None:
        lst = TcpListener(Echo(), 30.0, 100)
        conn, tr = open_conn(lst, "192.0.2.1")
        conn.pause_writing()  # the transport's write buffer passed its high-water mark
        assert not tr.reading
        conn.resume_writing()
        assert tr.reading
        conn.connection_lost(None)

    asyncio.run(run())
