"""Batched UDP I/O (recvmmsg/sendmmsg native helper) and its pure-Python fallback.

Real sockets on 127.0.0.1 / ::1. `make test` runs the whole suite twice: with the
native helper, and with MAMORI_UDP_BATCH=0 (the asyncio transport).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Any

import dns.message
import dns.rcode
import pytest

from mamori.resolver import batchio
from mamori.resolver.reply import Stats

native = batchio.native()
needs_native = pytest.mark.skipif(native is None, reason="pure-Python UDP path in use")


def _pair(family: int = socket.AF_INET) -> tuple[socket.socket, socket.socket]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    a = socket.socket(family, socket.SOCK_DGRAM)
    a.bind((host, 0))
    a.setblocking(False)
    b = socket.socket(family, socket.SOCK_DGRAM)
    b.bind((host, 0))
    return a, b


def _drain(s: socket.socket) -> list[bytes]:
    s.setblocking(False)
    got = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            got.append(s.recv(70000))
        except BlockingIOError:
            if got:
                break
            time.sleep(0.005)
    return got


def _recv_all(batch: Any, sock: socket.socket, want: int) -> list[list[tuple[bytes, Any]]]:
    calls = []
    deadline = time.monotonic() + 2
    while sum(len(c) for c in calls) < want and time.monotonic() < deadline:
        got = batch.recv(sock.fileno())
        if got:
            calls.append(got)
        else:
            time.sleep(0.002)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_native_helper_is_built_and_chosen_on_linux() -> None:
    if os.environ.get("MAMORI_UDP_BATCH", "1") == "0":
        assert native is None and "MAMORI_UDP_BATCH=0" in batchio.describe()
    else:
        assert native is not None, batchio.describe()
        assert batchio.describe().startswith("batched (recvmmsg/sendmmsg")


def test_without_the_helper_the_asyncio_path_serves_and_says_why() -> None:
    code = (
        "import sys; sys.modules['mamori.resolver.udpbatch'] = None\n"
        "from mamori.resolver import batchio\n"
        "assert batchio.native() is None\n"
        "print(batchio.describe())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith(
        "one datagram per call (asyncio transport, recvmsg/sendmsg on 0.0.0.0 and ::;"
        " the native helper mamori.resolver.udpbatch"
        " is not built: install mamori again with a C compiler and the Python headers"
    )


@pytest.mark.parametrize("value", ["0", "off", "No", "false", " FALSE "])
def test_batching_is_turned_off_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MAMORI_UDP_BATCH", value)
    assert batchio.native() is None
    if batchio._native is not None:
        assert f"turned off by MAMORI_UDP_BATCH={value}" in batchio.describe()


@needs_native
def test_recv_returns_nothing_at_once_when_nothing_waits() -> None:
    assert native is not None
    a, b = _pair()
    batch = native.Batch(8, 512)
    t = time.monotonic()
    assert batch.recv(a.fileno()) == []
    assert time.monotonic() - t < 1  # never blocks (a generous bound, not a timing test)
    a.close(), b.close()


@needs_native
def test_recv_takes_at_most_count_in_order_with_the_senders_address() -> None:
    assert native is not None
    a, b = _pair()
    for i in range(100):
        b.sendto(bytes([i]) * (i + 1), a.getsockname())
    batch = native.Batch(64, 512)
    calls = _recv_all(batch, a, 100)
    assert all(len(c) <= 64 for c in calls)
    got = [m for c in calls for m in c]
    assert [d for d, _ in got] == [bytes([i]) * (i + 1) for i in range(100)]
    assert {addr for _, addr in got} == {b.getsockname()}
    a.close(), b.close()


@needs_native
def test_a_datagram_longer_than_the_buffer_arrives_cut_and_counted() -> None:
    assert native is not None
    a, b = _pair()
    b.sendto(b"x" * 5000, a.getsockname())
    b.sendto(b"y" * 10, a.getsockname())
    batch = native.Batch(4, 4097)
    got = [m for c in _recv_all(batch, a, 2) for m in c]
    assert [len(d) for d, _ in got] == [4097, 10]
    assert batch.truncated == 1
    a.close(), b.close()


@needs_native
def test_send_delivers_every_message_and_skips_bad_addresses_counted() -> None:
    assert native is not None
    a, b = _pair()
    dest = b.getsockname()
    msgs: list[tuple[bytes, Any]] = [(b"m%d" % i, dest) for i in range(150)]
    msgs.insert(3, (b"lost", ("not-an-address", 53)))
    msgs.insert(7, (b"lost", ("127.0.0.1", 70000)))  # port out of range
    msgs.insert(9, (b"lost", ("127.0.0.1", 2**70)))  # does not fit a C long
    batch = native.Batch(64, 512)
    assert batch.send(a.fileno(), msgs) == len(msgs)
    assert batch.send_errors == 3
    assert sorted(_drain(b)) == sorted(b"m%d" % i for i in range(150))
    a.close(), b.close()


@needs_native
def test_send_rejects_what_is_not_a_bytes_address_pair() -> None:
    assert native is not None
    a, b = _pair()
    batch = native.Batch(4, 512)
    for bad in ([b"x"], [(b"x",)], [("text", b.getsockname())], [(b"x", "127.0.0.1")],
                [(b"x", ("127.0.0.1", "53"))]):  # fmt: skip
        with pytest.raises(TypeError):
            batch.send(a.fileno(), bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        batch.send(a.fileno(), [], 5)
    for count, size in ((0, 10), (10, 0), (native.MAX_COUNT + 1, 10), (1, native.MAX_SIZE + 1)):
        with pytest.raises(ValueError):
            native.Batch(count, size)
    a.close(), b.close()


@needs_native
def test_ipv6_sender_addresses_are_what_the_socket_module_gives() -> None:
    assert native is not None
    try:
        a, b = _pair(socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback")
    b.sendto(b"hello", a.getsockname())
    batch = native.Batch(4, 512)
    [(data, addr)] = [m for c in _recv_all(batch, a, 1) for m in c]
    assert data == b"hello" and addr == b.getsockname()
    assert batch.send(a.fileno(), [(b"back", addr)]) == 1
    assert b.recvfrom(100) == (b"back", a.getsockname())
    assert batch.answer(a.fileno(), [b"answer"]) == 1  # to the sender as the kernel gave it
    assert b.recvfrom(100) == (b"answer", a.getsockname())
    a.close(), b.close()


@needs_native
def test_answer_goes_to_each_datagrams_own_sender_and_none_sends_nothing() -> None:
    assert native is not None
    a, b = _pair()
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    for i in range(6):
        (b if i % 2 else c).sendto(b"q%d" % i, a.getsockname())
    batch = native.Batch(8, 512)
    [msgs] = _recv_all(batch, a, 6)
    assert len(msgs) == 6
    answers: list[bytes | None] = [b"a" + d if d != b"q4" else None for d, _ in msgs]
    assert batch.answer(a.fileno(), answers) == 6
    assert sorted(_drain(b)) == [b"aq1", b"aq3", b"aq5"]
    assert sorted(_drain(c)) == [b"aq0", b"aq2"]  # q4's None: no answer
    # The address objects are kept per sender address: the same host string (b and c
    # share 127.0.0.1), and the same tuple for the same sender port asking again.
    c.sendto(b"again", a.getsockname())
    c.sendto(b"and again", a.getsockname())
    [(_, addr), (_, addr2)] = [m for got in _recv_all(batch, a, 2) for m in got]
    assert addr == addr2 == c.getsockname() and addr2 is addr
    assert addr[0] is msgs[0][1][0] is msgs[1][1][0]
    a.close(), b.close(), c.close()


@needs_native
def test_answer_refuses_more_answers_than_datagrams_and_what_is_not_bytes() -> None:
    assert native is not None
    a, b = _pair()
    batch = native.Batch(4, 512)
    with pytest.raises(ValueError):  # nothing received yet
        batch.answer(a.fileno(), [b"x"])
    b.sendto(b"q", a.getsockname())
    assert len([m for c in _recv_all(batch, a, 1) for m in c]) == 1
    with pytest.raises(ValueError):
        batch.answer(a.fileno(), [b"x", b"y"])
    with pytest.raises(TypeError):
        batch.answer(a.fileno(), ["text"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        batch.answer(a.fileno(), [b"x"], 2)
    assert batch.answer(a.fileno(), [b"x"], 1) == 1  # nothing after start: nothing sent
    assert batch.recv(a.fileno()) == []
    with pytest.raises(ValueError):  # an empty receive: no sender to answer
        batch.answer(a.fileno(), [b"x"])
    a.close(), b.close()


@needs_native
def test_receive_on_a_closed_descriptor_is_an_oserror() -> None:
    assert native is not None
    a, b = _pair()
    fd = a.fileno()
    a.close()
    with pytest.raises(OSError):
        native.Batch(4, 512).recv(fd)
    b.close()


class _Echo:
    """Answers each query at once, or later through reply (odd IDs), like the pipeline."""

    def __init__(self) -> None:
        self.later: list[tuple[bytes, Any, Any]] = []

    def handle(self, data: bytes, addr: Any, reply: Any, tcp: bool) -> bytes | None:
        if len(data) < 12:
            raise RuntimeError("bug")  # answered SERVFAIL? too short: dropped
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q).to_wire()
        if q.id % 2:
            self.later.append((r, addr, reply))
            return None
        return r


def test_the_listener_answers_at_once_and_later_in_either_mode() -> None:
    async def go() -> tuple[list[int], int]:
        handler = _Echo()
        srv_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv_sock.bind(("127.0.0.1", 0))
        stats = Stats()
        server = await batchio.serve_udp(srv_sock, handler, stats)  # type: ignore[arg-type]
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.setblocking(False)
        ids = list(range(1, 201))
        for i in ids:
            q = dns.message.make_query("a.example", "A")
            q.id = i
            client.sendto(q.to_wire(), srv_sock.getsockname())
        client.sendto(b"\x00\x01", srv_sock.getsockname())  # a bug in the handler: no answer
        got: list[int] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(got) < len(ids) and loop.time() < deadline:
            await asyncio.sleep(0.01)
            for r, addr, reply in handler.later:
                reply(r, addr)
            handler.later.clear()
            while True:
                try:
                    got.append(dns.message.from_wire(client.recv(1000)).id)
                except BlockingIOError:
                    break
        server.close()
        client.close()
        return got, stats.udp_send_dropped

    got, dropped = asyncio.run(go())
    assert sorted(got) == list(range(1, 201)) and dropped == 0


class _Boom:
    def handle(self, data: bytes, addr: Any, reply: Any, tcp: bool) -> bytes | None:
        raise RuntimeError("bug")


class _BoomBatch(_Boom):
    """A batch handler (the DNSBL responder's shape) with a bug of its own."""

    def handle_batch(self, msgs: list[Any], one: Any) -> list[bytes | None]:
        raise RuntimeError("bug")


class _BoomOne(_Boom):
    """A batch handler passing its queries to the listener's guarded one-query call."""

    def handle_batch(self, msgs: list[Any], one: Any) -> list[bytes | None]:
        return [one(data, addr) for data, addr in msgs]


@pytest.mark.parametrize("handler", [_Boom, _BoomBatch, _BoomOne])
def test_a_bug_in_the_handler_costs_a_servfail_in_either_mode(handler: type[_Boom]) -> None:
    async def go() -> bytes:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        server = await batchio.serve_udp(s, handler())  # type: ignore[arg-type]
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.setblocking(False)
        c.sendto(dns.message.make_query("a.example", "A").to_wire(), s.getsockname())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            await asyncio.sleep(0.01)
            try:
                data = c.recv(1000)
                break
            except BlockingIOError:
                continue
        server.close()
        c.close()
        return data

    assert dns.message.from_wire(asyncio.run(go())).rcode() == dns.rcode.SERVFAIL


@needs_native
def test_answers_queued_while_the_socket_drains_go_out_in_order_and_overflow_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batchio, "PENDING_MAX", 50)

    async def go() -> tuple[list[bytes], int, bool]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        stats = Stats()
        server = await batchio.serve_udp(s, _Echo(), stats)  # type: ignore[arg-type]
        assert isinstance(server, batchio.BatchedUdp)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        dest = c.getsockname()
        # As when sendmmsg stopped on EAGAIN: answers wait for the socket to be writable.
        server._queue([(b"q%d" % i, dest) for i in range(40)], 0)
        server.reply(b"late", dest)  # queued behind, not sent ahead of them
        server._queue([(b"r%d" % i, dest) for i in range(20)], 0)  # 9 fit, 11 over the bound
        await asyncio.sleep(0.2)
        drained = not server.pending
        server.close()
        got = _drain(c)
        c.close()
        return got, stats.udp_send_dropped, drained

    got, dropped, drained = asyncio.run(go())
    assert got == [b"q%d" % i for i in range(40)] + [b"late"] + [b"r%d" % i for i in range(9)]
    assert dropped == 11 and drained
