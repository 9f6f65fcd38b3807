from __future__ import annotations

from typing import Any

import dns.message
import dns.rcode

from mamori.resolver.server import UdpServer


class _Boom:
    def handle(self, data: bytes, addr: Any, reply: Any, tcp: bool) -> bytes | None:
        raise RuntimeError("bug")


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return False


def test_a_bug_in_the_pipeline_answers_servfail_not_silence() -> None:
    srv = UdpServer(_Boom())  # type: ignore[arg-type]
    tr = _Transport()
    srv.connection_made(tr)  # type: ignore[arg-type]
    q = dns.message.make_query("a.example", "A")
    srv.datagram_received(q.to_wire(), ("127.0.0.1", 1))
    srv.datagram_received(b"\x00", ("127.0.0.1", 1))  # too short to answer: dropped
    assert len(tr.sent) == 1
    r = dns.message.from_wire(tr.sent[0])
    assert r.id == q.id and r.rcode() == dns.rcode.SERVFAIL
