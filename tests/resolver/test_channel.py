"""The control channel between planes: whole messages, descriptors, never blocking."""

from __future__ import annotations

import asyncio
import os
import socket

from mamori.resolver import channel as ch


def _pair(
    max_backlog: int = ch.MAX_BACKLOG,
) -> tuple[ch.Channel, ch.Channel, list[tuple[int, bytes, list[int]]], list[str]]:
    a_sock, b_sock = ch.pair()
    got: list[tuple[int, bytes, list[int]]] = []
    closed: list[str] = []
    a = ch.Channel(a_sock, lambda *m: None, lambda: closed.append("a"), max_backlog)
    b = ch.Channel(b_sock, lambda k, p, f: got.append((k, p, f)), lambda: closed.append("b"))
    return a, b, got, closed


async def _until(cond: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond() and loop.time() < end:  # type: ignore[operator]
        await asyncio.sleep(0.001)


def test_messages_larger_than_a_packet_arrive_whole_and_in_order() -> None:
    async def go() -> None:
        a, b, got, _ = _pair()
        a.start()
        b.start()
        big = os.urandom(ch.PART_BYTES * 3 + 17)
        assert a.send(ch.EVENTS, b"first")
        assert a.send(ch.POLICY, big)
        assert a.send(ch.STATS, b"")
        await _until(lambda: len(got) == 3)
        assert [(k, p) for k, p, _ in got] == [
            (ch.EVENTS, b"first"),
            (ch.POLICY, big),
            (ch.STATS, b""),
        ]
        a.close()
        b.close()

    asyncio.run(go())


def test_a_descriptor_travels_with_its_message_and_stays_usable() -> None:
    async def go() -> None:
        a, b, got, _ = _pair()
        a.start()
        b.start()
        left, right = socket.socketpair()
        a.send(ch.HANDOVER, b"conn", fds=(os.dup(left.fileno()),))
        await _until(lambda: got)
        kind, payload, fds = got[0]
        assert (kind, payload, len(fds)) == (ch.HANDOVER, b"conn", 1)
        received = socket.socket(fileno=fds[0])
        left.close()  # the received copy keeps the connection open
        received.sendall(b"ping")
        assert right.recv(4) == b"ping"
        for s in (received, right):
            s.close()
        a.close()
        b.close()

    asyncio.run(go())


def test_bulk_messages_are_dropped_and_counted_when_the_other_end_does_not_read() -> None:
    async def go() -> None:
        a, b, _, _ = _pair(max_backlog=1 << 20)
        a.start()  # b never reads
        blob = b"x" * 50_000
        sent = sum(a.send(ch.EVENTS, blob, droppable=True) for _ in range(400))
        assert 0 < sent < 400 and a.dropped == 400 - sent
        assert a.send(ch.CONFIG, b"must arrive")  # control messages queue, never dropped
        assert a.backlog > 1 << 20
        a.close()
        b.close()

    asyncio.run(go())


def test_the_other_end_going_away_closes_the_channel() -> None:
    async def go() -> None:
        a, b, _, closed = _pair()
        a.start()
        b.start()
        b.close()
        await _until(lambda: "a" in closed)
        assert closed == ["b", "a"] and a.closed
        assert not a.send(ch.EVENTS, b"late")

    asyncio.run(go())
