"""``[[dnsbl]]`` zones on their own listeners, in the data plane.

The responder (feeds/publish/dnsbl.py) answers on the wire from the entries
files the feed updates write, and reloads them when they change. With
``workers = 1`` it runs in the control process (which is then the data
plane); with more, every worker runs one per zone on its own
``SO_REUSEPORT`` sockets (``serve_in_worker``, handed to the workers by the
zygote), so DNSBL queries use every core as resolver queries do.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from mamori.config import Config
from mamori.feeds.publish.dnsbl import Responder
from mamori.feeds.sources import entries_path
from mamori.resolver.batchio import BatchedUdp, serve_udp
from mamori.resolver.server import TcpListener, bind_all

log = logging.getLogger("mamori.feeds.publish.dnsbl")


Server = BatchedUdp | asyncio.BaseTransport | asyncio.AbstractServer


def socket_count(cfg: Config) -> int:
    """Sockets a worker gets for the DNSBL zones: UDP and TCP per listen address."""
    return sum(2 * len(bl.listen) for bl in cfg.dnsbl)


def bind_for_worker(cfg: Config) -> list[socket.socket]:
    """A worker's own DNSBL sockets (SO_REUSEPORT), zone after zone, UDP then TCP."""
    socks: list[socket.socket] = []
    try:
        for bl in cfg.dnsbl:
            socks += bind_all(bl.listen, True, reuse_port=True)
    except Exception:
        for s in socks:
            s.close()
        raise
    return socks


async def serve_in_worker(cfg: Config, socks: list[socket.socket]) -> list[Server]:
    """In a worker: serve every zone on the sockets ``bind_for_worker`` made."""
    grouped, i = [], 0
    for bl in cfg.dnsbl:
        n = 2 * len(bl.listen)
        grouped.append(socks[i : i + n])
        i += n
    return await start(cfg, grouped, announce=False)


async def start(
    cfg: Config, socks: list[list[socket.socket]], announce: bool = True
) -> list[Server]:
    """Serve every [[dnsbl]] zone on its sockets (bound at start-up); the servers."""
    loop = asyncio.get_running_loop()
    out: list[Server] = []
    feeds = {f.name: f for f in cfg.feeds}
    for bl, zone_socks in zip(cfg.dnsbl, socks, strict=True):
        paths = [entries_path(feeds[n], cfg.store) for n in bl.feeds] + list(bl.files)
        responder = Responder(bl, paths)
        tcp = TcpListener(responder, 10.0, 1000)
        for sock in zone_socks:
            if sock.type == socket.SOCK_DGRAM:
                out.append(await serve_udp(sock, responder))
            else:
                out.append(await loop.create_server(tcp.factory, sock=sock))
        log.log(logging.INFO if announce else logging.DEBUG, "dnsbl %s (%s list) on %s",
                bl.zone, bl.kind, ", ".join(str(e) for e in bl.listen))  # fmt: skip
    return out
