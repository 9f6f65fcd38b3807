"""An in-process upstream for the pipeline (``resolver.upstream.Upstreams``): no sockets.

It answers from a zone given as text, the way an authoritative server would
for a forwarder: the records of the name (following CNAMEs it holds),
NXDOMAIN or NODATA with the zone's SOA, NS questions at delegation points.
It counts the questions it gets and can be told to fail (every upstream
down) or to wait before answering (a slow upstream).
"""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

from mamori.resolver.upstream import LATENCY_BUCKETS, UpstreamError, UpstreamHealth


class FakeUpstream:
    def __init__(self, zone_text: str, origin: str = "test.") -> None:
        self.zone = dns.zone.from_text(zone_text, origin=origin, relativize=False)
        self.origin = dns.name.from_text(origin)
        self.questions: list[tuple[str, str]] = []
        self.fail = False
        self.delay = 0.0
        self.answered = 0

    async def resolve(self, question: bytes, flags: int, do: bool) -> tuple[bytes, str]:
        name, end = dns.name.from_wire(question, 0)
        rdtype = dns.rdatatype.RdataType.make(int.from_bytes(question[end : end + 2], "big"))
        self.questions.append((name.to_text().lower(), dns.rdatatype.to_text(rdtype)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise UpstreamError("fake upstream: failing on purpose")
        q = dns.message.make_query(name, rdtype)
        q.flags = flags
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        self._answer(r, name, rdtype)
        self.answered += 1
        return r.to_wire(), "fake"

    def _answer(self, r: dns.message.Message, name: dns.name.Name, rdtype: int) -> None:
        for _ in range(8):  # CNAME chain inside the zone
            node = self.zone.get_node(name)
            if node is None:
                r.set_rcode(dns.rcode.NXDOMAIN)
                self._soa(r)
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is not None and rdtype != dns.rdatatype.CNAME:
                r.answer.append(dns.rrset.from_rdata_list(name, cname.ttl, list(cname)))
                name = cname[0].target  # type: ignore[attr-defined]
                continue
            rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rds is None:
                self._soa(r)  # NODATA
                return
            r.answer.append(dns.rrset.from_rdata_list(name, rds.ttl, list(rds)))
            return

    def _soa(self, r: dns.message.Message) -> None:
        soa = self.zone.get_rdataset(self.origin, dns.rdatatype.SOA)
        if soa is not None:
            r.authority.append(dns.rrset.from_rdata_list(self.origin, soa.ttl, list(soa)))

    def health(self) -> list[UpstreamHealth]:
        latency = (0,) * (len(LATENCY_BUCKETS) + 1)
        n = len(self.questions)
        return [UpstreamHealth("fake", not self.fail, 0.001, n, n - self.answered, 0, latency, 0.0)]

    def close(self) -> None:
        pass
