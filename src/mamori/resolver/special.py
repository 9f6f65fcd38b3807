"""Messages that are not ordinary queries: other opcodes, odd section counts, malformed
questions, zone-transfer question types.

They leave the pipeline at stage 1, 2 or 3 and are answered here: handed to
the control plane (NOTIFY, AXFR/IXFR and apex SOA/NS of zones we publish:
routing.py), REFUSED (clients outside ``allow``, transfers when we publish
nothing), NOTIMP (opcodes other than QUERY) or FORMERR. Never dnspython.
"""

from __future__ import annotations

from typing import Any

from mamori.dnsutil import wire
from mamori.resolver.acl import ClientTable
from mamori.resolver.query import (
    REASON_ACL,
    REASON_FORMERR,
    REASON_META,
    REASON_NOTIMP,
    Outcome,
    Reply,
)
from mamori.resolver.reply import Replies
from mamori.resolver.routing import ControlLink, Routes

OPCODE_NOTIFY = 4
TYPE_XFR = (b"\x00\xfb", b"\x00\xfc")  # IXFR, AXFR
CONTINUE = object()  # stage 3: not control traffic after all, go on


class SpecialMessages:
    """Answers or routes what is not an ordinary query (settings set by the pipeline)."""

    def __init__(self, replies: Replies, control: ControlLink | None) -> None:
        self.replies = replies
        self.stats = replies.stats
        self.control = control
        self.routes = Routes()
        self.clients = ClientTable((), 0.0)

    def question(
        self, data: bytes, addr: Any, reply: Reply, tcp: bool, now: float, nend: int, qtc: bytes
    ) -> bytes | object | None:
        """Stage 3 for AXFR/IXFR (and SOA/NS when we publish zones): to the control plane,
        REFUSED (transfers when nothing is published), or CONTINUE (an ordinary query)."""
        routes = self.routes
        if qtc[:2] in routes.types and routes.wants(data, nend, qtc):
            assert self.control is not None
            self.control.forward(data, addr, reply, tcp)
            return None
        if qtc[:2] in TYPE_XFR:
            self.stats.refused += 1
            return self.replies.error(
                data, wire.REFUSED, addr[0], now, tcp, Outcome.REFUSED, REASON_META,
                wire.EDE_PROHIBITED,
            )  # fmt: skip
        return CONTINUE

    def unusual(self, data: bytes, addr: Any, reply: Reply, tcp: bool, now: float) -> bytes | None:
        """An opcode other than QUERY, or section counts other than one question (+ OPT).

        NOTIFY (opcode 4) and IXFR requests (a SOA in the authority section) go to
        the control plane when it wants them; the rest is NOTIMP or FORMERR
        (REFUSED outside ``allow``).
        """
        opcode = (data[2] >> 3) & 0xF
        routes = self.routes
        if opcode == OPCODE_NOTIFY and routes.notify:
            assert self.control is not None
            self.control.forward(data, addr, reply, tcp)
            return None
        if opcode == 0 and routes.types and data[4:6] == b"\x00\x01":
            try:
                nend = wire.scan_name(data, 12)
            except wire.WireError:
                nend = 0
            qtc = data[nend : nend + 4]
            if nend and qtc[:2] in routes.types and routes.wants(data, nend, qtc):
                assert self.control is not None
                self.control.forward(data, addr, reply, tcp)
                return None
        ip = addr[0]
        if not self.clients.is_allowed(ip):
            self.stats.refused += 1
            return self.replies.error(
                data, wire.REFUSED, ip, now, tcp, Outcome.REFUSED, REASON_ACL, wire.EDE_PROHIBITED
            )
        if opcode != 0:
            self.stats.notimp += 1
            return self.replies.error(data, wire.NOTIMP, ip, now, tcp, Outcome.ERROR, REASON_NOTIMP)
        return self.replies.error(data, wire.FORMERR, ip, now, tcp, Outcome.ERROR, REASON_FORMERR)

    def formerr(self, data: bytes, ip: str, now: float, tcp: bool) -> bytes:
        """FORMERR for a malformed question (REFUSED to clients outside ``allow``)."""
        if not self.clients.is_allowed(ip):
            self.stats.refused += 1
            return self.replies.error(
                data, wire.REFUSED, ip, now, tcp, Outcome.REFUSED, REASON_ACL, wire.EDE_PROHIBITED
            )
        return self.replies.error(data, wire.FORMERR, ip, now, tcp, Outcome.ERROR, REASON_FORMERR)
