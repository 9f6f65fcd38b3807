"""The pipeline of ``mamori zones serve``: a primary only, no resolution."""

from __future__ import annotations

from typing import Any

from mamori.dnsutil import wire
from mamori.resolver.pipeline import Pipeline, Reply, _xfr_or_soa


class PrimaryOnlyPipeline(Pipeline):
    """``mamori zones serve``: zone transfers, apex SOA/NS and NOTIFY; no resolution."""

    def handle(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> bytes | None:
        if len(data) < 12 or data[2] & 0x80:
            return None
        self.stats.queries += 1
        if (data[2] >> 3) & 0xF == 4 and self.notify_handler is not None:
            return self.notify_handler(data, addr[0])  # we may relay a zone from a primary
        if self.xfr_handler is not None and _xfr_or_soa(data):
            return self._for_secondary(data, addr, reply, tcp)
        if self.local_answer is not None:
            local = self.local_answer(data, addr[0])
            if local is not None:
                return local
        self.stats.refused += 1
        try:
            qend = wire.scan_name(data, 12) + 4 if data[4:6] == b"\x00\x01" else 0
        except wire.WireError:
            qend = 0
        return wire.error_response(data, wire.REFUSED, min(qend, len(data)))
