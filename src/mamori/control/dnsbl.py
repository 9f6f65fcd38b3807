"""``[[dnsbl]]`` zones served by the control plane, on their own listeners.

The responder (feeds/publish/dnsbl.py) answers on the wire from the entries
files the feed updates write, and reloads them when they change. It runs in
the control plane's process whatever the number of workers (one core; see
docs/performance.md for its rate).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from mamori.config import Config
from mamori.feeds.publish.dnsbl import Responder
from mamori.feeds.sources import entries_path
from mamori.resolver.batchio import BatchedUdp, serve_udp
from mamori.resolver.server import TcpListener

log = logging.getLogger("mamori.feeds.publish.dnsbl")


async def start(
    cfg: Config, socks: list[list[socket.socket]]
) -> list[BatchedUdp | asyncio.BaseTransport | asyncio.AbstractServer]:
    """Serve every [[dnsbl]] zone on its sockets (bound at start-up); the servers."""
    loop = asyncio.get_running_loop()
    out: list[BatchedUdp | asyncio.BaseTransport | asyncio.AbstractServer] = []
    feeds = {f.name: f for f in cfg.feeds}
    for bl, zone_socks in zip(cfg.dnsbl, socks, strict=True):
        responder = Responder(bl, [entries_path(feeds[n], cfg.store) for n in bl.feeds])
        tcp = TcpListener(responder, 10.0, 1000)
        for sock in zone_socks:
            if sock.type == socket.SOCK_DGRAM:
                out.append(await serve_udp(sock, responder))
            else:
                out.append(await loop.create_server(tcp.factory, sock=sock))
        log.info("dnsbl %s (%s list) on %s", bl.zone, bl.kind, ", ".join(str(e) for e in bl.listen))
    return out
