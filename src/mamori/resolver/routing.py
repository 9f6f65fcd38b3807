"""Control traffic on the DNS port: which messages the control plane answers, and how.

Zone transfer is the control plane's work, though its messages arrive on the
same sockets as queries: NOTIFY from the primaries of zones we transfer
(RFC 1996), AXFR/IXFR requests from our secondaries (RFC 5936, RFC 1995) and
their SOA (and NS) queries for the apex of a zone we publish. The pipeline
checks ``Routes`` once, right after the question parse (stage 3), and hands
such a message to a ``ControlLink`` whole; it never enters the query stages.
Clients' ACL does not apply: the control plane checks its own (TSIG keys,
``[publish] allow``, the zone's primaries).
"""

from __future__ import annotations

from typing import Any, Protocol

from mamori.resolver.query import Reply

TYPE_SOA = b"\x00\x06"
TYPE_NS = b"\x00\x02"
TYPE_IXFR = b"\x00\xfb"
TYPE_AXFR = b"\x00\xfc"
_XFR = (TYPE_IXFR, TYPE_AXFR)


class Routes:
    """What the control plane wants to see (a value; the control plane sends a new one).

    *published*: lowercased wire names of the zones we serve by AXFR/IXFR (their
    SOA/NS queries and transfer requests go to the control plane); *notify*:
    NOTIFY messages go there (there are zones we transfer from primaries).
    """

    __slots__ = ("notify", "published", "types")

    def __init__(self, published: frozenset[bytes] = frozenset(), notify: bool = False) -> None:
        self.published = published
        self.notify = notify
        # qtypes to look at closer on the hot path (one tuple membership test per query)
        self.types: tuple[bytes, ...] = (*_XFR, TYPE_SOA, TYPE_NS) if published else ()

    def wants(self, data: bytes, nend: int, qtc: bytes) -> bool:
        """Is this question (name ending at *nend*, type+class *qtc*) for the control plane?"""
        return qtc[:2] in _XFR or data[12:nend].lower() in self.published

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Routes)
            and other.published == self.published
            and other.notify == self.notify
        )

    def __hash__(self) -> int:
        return hash((self.published, self.notify))

    def __repr__(self) -> str:
        return f"Routes(published={len(self.published)} zones, notify={self.notify})"


class ControlLink(Protocol):
    """The data plane's door to the control plane's zone-transfer code.

    In one process (``workers = 1``) the control plane's router itself; in a
    worker, a proxy over the worker's channel (UDP messages and their answers
    cross it; a TCP connection is handed over whole).
    """

    def forward(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> None:
        """Take a message for the control plane; answers (if any) go through *reply*.

        For TCP, *reply* is the connection's; the control plane may stream many
        messages through it (AXFR) and may take the connection over.
        """
        ...
