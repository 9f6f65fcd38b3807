"""A UDP socket bound to 0.0.0.0 / :: answers from the address each query came to.

RFC 1122 4.1.3.5: a UDP reply leaves from the request's destination. A client
with a connected socket (what stub resolvers use) drops a datagram from any
other address. On loopback every 127.0.0.0/8 address is local, so a query to
127.0.0.2 on a wildcard socket is answered from 127.0.0.1 unless the local
address is carried through (IP_PKTINFO). IPv6 needs a second local address:
that test makes a network namespace (root, as in CI) and is skipped without one.
Both UDP paths are tested in one run: the native helper, and ``SocketBatch``
(recvmsg/sendmsg) that serves wildcard sockets without it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dns.message
import pytest

from mamori.resolver import batchio
from mamori.resolver.reply import Stats
from tests.resolver import test_batchio

PATHS = ["native", "socket"] if batchio.native() is not None else ["socket"]


class _Echo(test_batchio._Echo):
    """Answers even query IDs at once, odd ones later through reply (as a cache miss);
    keeps the sender addresses it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.addrs: list[Any] = []

    def handle(self, data: bytes, addr: Any, reply: Any, tcp: bool) -> bytes | None:
        self.addrs.append(addr)
        return super().handle(data, addr, reply, tcp)


class _EchoBatch(_Echo):
    """The same through handle_batch (the pipeline's and the DNSBL's shape)."""

    def handle_batch(self, msgs: list[Any], one: Any) -> list[bytes | None]:
        return [one(data, addr) for data, addr in msgs]


def _client(family: int, dest: tuple[str, int]) -> socket.socket:
    c = socket.socket(family, socket.SOCK_DGRAM)
    c.connect(dest)  # accepts datagrams from dest only
    c.setblocking(False)
    return c


async def _serve(path: str, s: socket.socket, handler: _Echo, stats: Stats | None = None) -> Any:
    """``serve_udp`` on the wildcard socket *s* through *path*: the native helper, or
    ``SocketBatch`` as without it."""
    old = batchio.native
    if path == "socket":
        batchio.native = lambda: None  # type: ignore[assignment]
    try:
        server = await batchio.serve_udp(s, handler, stats)  # type: ignore[arg-type]
    finally:
        batchio.native = old  # type: ignore[assignment]
    assert isinstance(server, batchio.BatchedUdp) and server.batch is not None
    assert isinstance(server.batch, batchio.SocketBatch) is (path == "socket")
    return server


async def _exchange(
    path: str,
    family: int,
    dests: list[str],
    handler: _Echo,
    queue_first: bool = False,
) -> tuple[dict[str, list[int]], Stats, Any]:
    """Serve *handler* on the wildcard address, ask 20 queries per destination
    through a connected client each; the IDs each client received."""
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((wildcard, 0))
    port = s.getsockname()[1]
    stats = Stats()
    server = await _serve(path, s, handler, stats)
    assert isinstance(server, batchio.BatchedUdp) and server.local
    if queue_first:  # answers wait for the socket: the later ones queue behind, with local
        server._queue([(b"\x00" * 12, ("127.0.0.1" if family == socket.AF_INET else "::1", 9))], 0)
    clients = {d: _client(family, (d, port)) for d in dests}
    for n, (_d, c) in enumerate(clients.items()):
        for i in range(20):
            q = dns.message.make_query("a.example", "A")
            q.id = n * 100 + i
            c.send(q.to_wire())
    got: dict[str, list[int]] = {d: [] for d in dests}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while sum(map(len, got.values())) < 20 * len(dests) and loop.time() < deadline:
        await asyncio.sleep(0.01)
        for r, addr, reply in handler.later:
            reply(r, addr)
        handler.later.clear()
        for d, c in clients.items():
            while True:
                try:
                    got[d].append(dns.message.from_wire(c.recv(1000)).id)
                except (BlockingIOError, ConnectionRefusedError):
                    break
    server.close()
    for c in clients.values():
        c.close()
    return got, stats, server


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_PKTINFO: Linux")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("handler", [_Echo, _EchoBatch])
@pytest.mark.parametrize("queue_first", [False, True])
def test_ipv4_wildcard_answers_from_the_address_asked(
    path: str, handler: type[_Echo], queue_first: bool
) -> None:
    h = handler()
    dests = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    got, stats, _server = asyncio.run(_exchange(path, socket.AF_INET, dests, h, queue_first))
    for n, d in enumerate(dests):  # at once (even) and later (odd), queued or not
        assert sorted(got[d]) == [n * 100 + i for i in range(20)], (d, got[d])
    assert stats.udp_send_dropped == 0
    # the handler saw the sender's address as the socket module gives it
    assert all(a[0] == "127.0.0.1" and isinstance(a, batchio.LocalAddr) for a in h.addrs)
    host, port = h.addrs[0]  # unpacks as ever
    assert host == "127.0.0.1" and port > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_PKTINFO: Linux")
@pytest.mark.parametrize("path", PATHS)
def test_a_query_that_came_before_serving_is_answered_from_the_address_asked(
    path: str,
) -> None:
    """A listening socket gets queries as soon as it is bound (a worker's SO_REUSEPORT
    socket: before the worker runs). Linux notes the address to answer from when a
    datagram is queued, so ``bind_socket`` turns IP_PKTINFO on before ``bind``: with
    it on only when serving starts, the first query was answered from 127.0.0.1."""
    from mamori.config import Endpoint
    from mamori.resolver.server import bind_socket

    s = bind_socket(Endpoint("0.0.0.0", 0), socket.SOCK_DGRAM, reuse_port=True)
    port = s.getsockname()[1]
    c = _client(socket.AF_INET, ("127.0.0.2", port))
    q = dns.message.make_query("early.example", "A")
    q.id = 2  # answered at once
    c.send(q.to_wire())  # queued before anything serves the socket
    time.sleep(0.05)

    async def go() -> int:
        server = await _serve(path, s, _Echo())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        try:
            while loop.time() < deadline:
                await asyncio.sleep(0.01)
                try:  # the connected client takes an answer from 127.0.0.2 only
                    return dns.message.from_wire(c.recv(1000)).id
                except (BlockingIOError, ConnectionRefusedError):
                    continue
            return -1
        finally:
            server.close()

    try:
        assert asyncio.run(go()) == 2
    finally:
        c.close()


def test_a_socket_bound_to_one_address_keeps_the_plain_path() -> None:
    async def go() -> Any:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        server = await batchio.serve_udp(s, _Echo())  # type: ignore[arg-type]
        server.close()
        return server

    server = asyncio.run(go())
    assert not isinstance(server, batchio.BatchedUdp) or not server.local


def test_local_cmsg_clears_the_ipv4_interface_and_refuses_other_lengths() -> None:
    pi4 = (7).to_bytes(4, "little") + socket.inet_aton("127.0.0.2") + socket.inet_aton("127.0.0.2")
    [(level, kind, data)] = batchio.local_cmsg(pi4)
    assert (level, kind) == (socket.IPPROTO_IP, batchio.IP_PKTINFO)
    assert data[:4] == bytes(4) and data[4:] == pi4[4:]
    pi6 = socket.inet_pton(socket.AF_INET6, "fd00::53") + (3).to_bytes(4, "little")
    assert batchio.local_cmsg(pi6) == [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pi6)]
    assert batchio.local_cmsg(b"") == [] and batchio.local_cmsg(b"x" * 13) == []
    # a query to a multicast group (ff02::1): the group is no source; the kernel picks
    group = socket.inet_pton(socket.AF_INET6, "ff02::1") + (1).to_bytes(4, "little")
    [(_, _, data)] = batchio.local_cmsg(group)
    assert data == bytes(16) + (1).to_bytes(4, "little")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_PKTINFO: Linux")
@pytest.mark.parametrize("path", PATHS)
def test_an_answer_to_a_multicast_query_leaves_from_a_unicast_address(path: str) -> None:
    """As if asked at ff02::1 (received pktinfo holds the group): still sent."""
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::", 0))
    batchio.receive_local(s)
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.bind(("::1", 0))
    c.settimeout(2)
    group = socket.inet_pton(socket.AF_INET6, "ff02::1") + (1).to_bytes(4, "little")
    if path == "native":
        native = batchio.native()
        assert native is not None
        batch: Any = native.Batch(4, 512, local=batchio.LocalAddr)
    else:
        batch = batchio.SocketBatch(s)
    assert batch.send(s.fileno(), [(b"answer", c.getsockname(), group)]) == 1
    assert batch.send_errors == 0
    data, src = c.recvfrom(100)
    assert data == b"answer" and src[0] == "::1"
    s.close(), c.close()


@pytest.mark.skipif(batchio.native() is None, reason="pure-Python UDP path in use")
def test_native_send_takes_a_local_address_and_drops_a_bad_one() -> None:
    native = batchio.native()
    assert native is not None
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("0.0.0.0", 0))
    batchio.receive_local(srv)
    port = srv.getsockname()[1]
    c = _client(socket.AF_INET, ("127.0.0.2", port))
    c.send(b"hello")
    batch = native.Batch(4, 512, local=batchio.LocalAddr)
    deadline = time.monotonic() + 2
    msgs: list[Any] = []
    while not msgs and time.monotonic() < deadline:
        msgs = batch.recv(srv.fileno())
    [(data, addr)] = msgs
    local = addr.local
    assert data == b"hello" and len(local) == 12 and local[8:] == socket.inet_aton("127.0.0.2")
    before = batch.send_errors
    assert batch.send(srv.fileno(), [(b"bad", addr, b"short"), (b"good", addr, local)]) == 2
    assert batch.send_errors == before + 1
    with pytest.raises(TypeError):
        batch.send(srv.fileno(), [(b"x", addr, "not bytes")])
    time.sleep(0.05)
    assert c.recv(100) == b"good"  # from 127.0.0.2: the connected client takes it
    with pytest.raises(TypeError):
        native.Batch(4, 512, local=dict)  # type: ignore[arg-type]
    # One sender asking two local addresses: each datagram carries its own (the kept
    # address objects are reused only for the same sender and local address).
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    for to in ("127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.2"):
        u.sendto(to.encode(), (to, port))
    got: list[Any] = []
    deadline = time.monotonic() + 2
    while len(got) < 4 and time.monotonic() < deadline:
        got += batch.recv(srv.fileno())
    assert [d for d, _ in got] == [b"127.0.0.2", b"127.0.0.2", b"127.0.0.3", b"127.0.0.2"]
    assert len({a for _, a in got}) == 1  # the same sender (equal tuples) ...
    assert [a.local[8:] for _, a in got] == [socket.inet_aton(d.decode()) for d, _ in got]
    assert got[0][1] is got[1][1] and got[1][1] is not got[2][1]  # ... kept while it holds
    u.close(), srv.close(), c.close()


_IPV6_SCRIPT = """
import asyncio, socket, sys
sys.path.insert(0, {root!r})
from tests.resolver import test_wildcard_listen as t
for path in t.PATHS:
    for handler in (t._Echo, t._EchoBatch):
        dests = ["::1", "fd00::53"]
        got, stats, _ = asyncio.run(t._exchange(path, socket.AF_INET6, dests, handler()))
        assert sorted(got["::1"]) == list(range(20)), (path, got)
        assert sorted(got["fd00::53"]) == list(range(100, 120)), (path, got)
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_PKTINFO: Linux")
def test_ipv6_wildcard_answers_from_the_address_asked(tmp_path: Path) -> None:
    """In a network namespace of its own, with fd00::53 added to its loopback."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        pytest.skip("unshare or ip missing")
    # root (CI): a network namespace; otherwise try a user namespace mapping us to root
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    setup = f"{ip} link set lo up && {ip} -6 addr add fd00::53/128 dev lo nodad"
    probe = subprocess.run([*prefix, "sh", "-c", setup], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no network namespace here: {probe.stderr.strip()}")
    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "v6.py"
    script.write_text(_IPV6_SCRIPT.format(root=root))
    out = subprocess.run(
        [*prefix, "sh", "-c", f"{setup} && {sys.executable} {script}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
