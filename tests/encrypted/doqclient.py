"""A DNS over QUIC client (RFC 9250) on aioquic, for the tests."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration


class DoqClient(QuicConnectionProtocol):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.answers: dict[int, asyncio.Future[bytes]] = {}
        self.buffers: dict[int, bytes] = {}
        self.closed_with: int | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            buf = self.buffers.get(event.stream_id, b"") + event.data
            self.buffers[event.stream_id] = buf
            fut = self.answers.get(event.stream_id)
            if event.end_stream and fut is not None and not fut.done():
                fut.set_result(buf[2:])
        elif isinstance(event, events.ConnectionTerminated):
            self.closed_with = event.error_code
            for fut in self.answers.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"closed: {event.error_code}"))

    async def ask(self, msg: bytes, timeout: float = 5.0) -> bytes:
        sid = self._quic.get_next_available_stream_id()
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.answers[sid] = fut
        self._quic.send_stream_data(sid, struct.pack("!H", len(msg)) + msg, end_stream=True)
        self.transmit()
        return await asyncio.wait_for(fut, timeout)


def configuration(ca: Path, server_name: str) -> QuicConfiguration:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["doq"], server_name=server_name)
    cfg.load_verify_locations(str(ca))
    return cfg


async def query_many(
    port: int, ca: Path, server_name: str, msgs: list[bytes], host: str = "127.0.0.1"
) -> list[bytes]:
    """Answers to *msgs* (wire), each on its own stream of one connection."""
    async with connect(host, port, configuration=configuration(ca, server_name),
                       create_protocol=DoqClient) as client:  # fmt: skip
        assert isinstance(client, DoqClient)
        return list(await asyncio.gather(*(client.ask(m) for m in msgs)))


def query(port: int, ca: Path, server_name: str, msg: bytes) -> bytes:
    return asyncio.run(asyncio.wait_for(query_many(port, ca, server_name, [msg]), 10))[0]
