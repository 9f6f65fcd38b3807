"""The control plane's end of zone-transfer traffic on the DNS port.

What the data plane routes here (resolver/routing.py) is answered in one
place: NOTIFY goes to the secondaries (subscriptions.py), AXFR/IXFR requests
and SOA/NS questions for a published zone's apex to the publisher
(xfr/primary.py). This object is the ``ControlLink`` of an in-process data
plane, answers what workers forward, and is the whole message handler of
``mamori zones serve`` (which runs no resolver: everything else is REFUSED).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import dns.name

from mamori.control.subscriptions import Subscriptions
from mamori.dnsutil import wire
from mamori.resolver.query import Reply
from mamori.resolver.routing import TYPE_NS, TYPE_SOA, Routes
from mamori.xfr.primary import Publisher

log = logging.getLogger(__name__)

OPCODE_NOTIFY = 4


class ZoneTraffic:
    def __init__(self, publisher: Publisher, subscriptions: Subscriptions | None) -> None:
        self.publisher = publisher
        self.subscriptions = subscriptions
        self.tasks: set[asyncio.Task[None]] = set()

    def routes(self) -> Routes:
        """What the data plane should send here, for the zones configured now."""
        published = frozenset(
            (dns.name.from_text(name).to_wire() or b"").lower() for name in self.publisher.wanted
        )
        notify = self.subscriptions is not None and bool(self.subscriptions.subs)
        return Routes(published, notify)

    # ------------------------------------------------------------- ControlLink
    def forward(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> None:
        """Answer control traffic (answers, if any, through *reply*)."""
        if len(data) < 12:
            return
        source = addr[0]
        if (data[2] >> 3) & 0xF == OPCODE_NOTIFY:
            subs = self.subscriptions
            resp = subs.on_notify(data, source) if subs is not None else None
            if resp is not None:
                reply(resp, addr)
            return
        try:
            end = wire.scan_name(data, 12)
        except wire.WireError:
            reply(wire.error_response(data, wire.FORMERR), addr)
            return
        if data[end : end + 2] in (TYPE_SOA, TYPE_NS):
            resp = self.publisher.soa_answer(data, source)
            reply(resp or wire.error_response(data, wire.REFUSED, min(end + 4, len(data))), addr)
            return
        self._spawn(self.publisher.serve(data, addr, reply, tcp))

    # ------------------------------------------------- mamori zones serve
    def handle(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> bytes | None:
        """The message handler when no resolver runs: control traffic, else REFUSED."""
        if len(data) < 12 or data[2] & 0x80:
            return None
        routes = self.routes()
        opcode = (data[2] >> 3) & 0xF
        if opcode == OPCODE_NOTIFY and routes.notify:
            self.forward(data, addr, reply, tcp)
            return None
        qend = 0
        try:
            if data[4:6] == b"\x00\x01":
                nend = wire.scan_name(data, 12)
                qend = nend + 4 if nend + 4 <= len(data) else 0
                qtc = data[nend : nend + 4]
                if opcode == 0 and qtc[:2] in routes.types and routes.wants(data, nend, qtc):
                    self.forward(data, addr, reply, tcp)
                    return None
        except wire.WireError:
            qend = 0
        return wire.error_response(data, wire.REFUSED, qend)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
