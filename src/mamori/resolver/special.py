"""Messages that are not ordinary queries: other opcodes, odd section counts, malformed
questions, zone-transfer question types.

They leave the pipeline at stage 1, 2 or 3 and are answered here: handed to
the control plane (NOTIFY, AXFR/IXFR and apex SOA/NS of zones we publish:
routing.py), REFUSED (clients outside ``allow``, transfers when we publish
nothing), NOTIMP (opcodes other than QUERY) or FORMERR. Stage 3 also answers
DDR (``_dns.resolver.arpa`` SVCB, RFC 9462: ddr.py) locally; other SVCB
queries go on. Never dnspython.
"""

from __future__ import annotations

from typing import Any

from mamori.dnsutil import wire
from mamori.resolver.acl import ClientTable
from mamori.resolver.ddr import DDR_NAME, QTYPE_SVCB, ddr_answer
from mamori.resolver.query import (
    REASON_ACL,
    REASON_BADVERS,
    REASON_DDR,
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
        self.ddr_records: list[bytes] = []  # DDR's SVCB answer records (ddr.ddr_records)
        self.ddr_summary = ""  # the same as the query log shows them

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
        if qtc[:2] == QTYPE_SVCB:
            if data[12:nend].lower() == DDR_NAME and qtc[2:] == b"\x00\x01":
                return self.ddr(data, addr[0], tcp, now, nend)
            return CONTINUE
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

    def ddr(self, data: bytes, ip: str, tcp: bool, now: float, nend: int) -> bytes:
        """The DDR answer (RFC 9462): our encrypted endpoints as SVCB records, or NODATA
        when there are none; REFUSED outside ``allow``, FORMERR for a bad OPT record,
        BADVERS for EDNS versions other than 0 (RFC 6891).
        Logged like any answer (outcome ``resolved``, reason ``ddr``, no upstream)."""
        clients = self.clients
        cl = clients.clients.get(ip) or clients.lookup(ip, now)
        label = cl.slot.label
        if not cl.allowed:
            self.stats.refused += 1
            return self.replies.error(
                data, wire.REFUSED, ip, now, tcp, Outcome.REFUSED, REASON_ACL, wire.EDE_PROHIBITED,
                label,
            )  # fmt: skip
        qend = nend + 4
        opt = b""
        if data[11]:
            try:
                edns, end = wire.parse_opt(data, qend)
            except wire.WireError:
                return self.formerr(data, ip, now, tcp)
            if end != len(data):
                return self.formerr(data, ip, now, tcp)
            if edns.version:
                return self.replies.error(
                    data, wire.BADVERS, ip, now, tcp, Outcome.ERROR, REASON_BADVERS, None, label
                )
            opt = self.replies.opt_do if edns.do else self.replies.opt_plain
        elif qend != len(data):
            return self.formerr(data, ip, now, tcp)
        if self.replies.log_queries:
            key = data[12:nend].lower() + data[nend:qend] + b"\x00"
            self.replies.events.put(
                (now, ip, key, wire.NOERROR, self.ddr_summary, 0, "", Outcome.RESOLVED.value,
                 REASON_DDR, tcp, None, label)
            )  # fmt: skip
        return ddr_answer(data, qend, self.ddr_records, opt)

    def formerr(self, data: bytes, ip: str, now: float, tcp: bool) -> bytes:
        """FORMERR for a malformed question (REFUSED to clients outside ``allow``)."""
        if not self.clients.is_allowed(ip):
            self.stats.refused += 1
            return self.replies.error(
                data, wire.REFUSED, ip, now, tcp, Outcome.REFUSED, REASON_ACL, wire.EDE_PROHIBITED
            )
        return self.replies.error(data, wire.FORMERR, ip, now, tcp, Outcome.ERROR, REASON_FORMERR)
