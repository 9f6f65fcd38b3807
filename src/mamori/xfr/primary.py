"""Primary for policy zones: serve AXFR/IXFR to other resolvers, send NOTIFY.

Zones with ``publish = true`` are served on mamori's own DNS listeners (TCP
for transfers, as BIND does on port 53): AXFR (RFC 5936), IXFR (RFC 1995)
from a bounded history of versions, SOA queries for the zone apex, TSIG
(RFC 8945) on requests and every message of a response. Who may transfer:
a secondary that signs with a key listed for the zone, or an address in
``[publish] allow`` (Unbound cannot sign transfer requests).

A new version of a published zone (reload, file change, transfer from our own
primary) is compared with the previous one, the difference kept for IXFR,
the serial raised if the zone changed without a higher serial, and NOTIFY sent
to ``[publish] notify``. Serials are compared in RFC 1982 serial order
(``dnsutil.serial``), so a zone file whose serial wrapped past 4294967295 is
newer, as BIND sees it. The published serial is stored next to the store so
it never goes backwards across restarts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import struct
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

from mamori.config import Config, Endpoint, TsigSpec
from mamori.dnsutil import serial as rfc1982
from mamori.policy.rules import LoadedZone, free_steps
from mamori.steps import drive
from mamori.store.privacy import masker
from mamori.xfr import render
from mamori.xfr.diff import Version, diff_steps
from mamori.xfr.messages import Signer, client_serial, error, message, question_len, with_serial
from mamori.xfr.published import Announcer, Published
from mamori.xfr.tsig import keyring

log = logging.getLogger(__name__)

MESSAGE_BYTES = 16_000  # records per AXFR/IXFR message: up to this size (BIND: ~16k)
MAX_BACKLOG = 1 << 20  # pause streaming while this much waits in the socket buffer
_HDR = struct.Struct("!HHHHHH")
_AXFR, _IXFR = dns.rdatatype.AXFR, dns.rdatatype.IXFR

Reply = Callable[[bytes, Any], None]


class Publisher(Announcer):
    def __init__(self, cfg: Config, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.zones: dict[str, Published] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.configure(cfg)

    def configure(self, cfg: Config) -> None:
        p = cfg.publish
        self.cfg = cfg
        # refused requests may come from any DNS client: logged as [store] client_addresses says
        self.client_text = masker(cfg.store.client_addresses)
        self.allow = [ipaddress.ip_network(n, strict=False) for n in p.allow]
        self.keys: dict[dns.name.Name, dns.tsig.Key] = {}
        for spec in p.keys:
            self.keys.update(keyring(spec)[0])
        self.key_specs: dict[str, TsigSpec] = {k.name: k for k in p.keys}
        self.notify_to: tuple[Endpoint, ...] = p.notify
        self.history_len = p.history
        self.wanted = {z.name: z for z in cfg.rpz if z.publish}
        for name in list(self.zones):
            if name not in self.wanted:
                del self.zones[name]

    @property
    def active(self) -> bool:
        return bool(self.wanted)

    # ---------------------------------------------------------- new versions
    def record_deltas(self, name: str, deltas: list[Any]) -> None:
        """Differences applied in place to a zone (IXFR received): kept for our IXFR.

        Converted to wire records later, step by step (``_publish``).
        """
        pub = self.zones.get(name)
        if pub is not None:
            pub.pending.extend(deltas)

    def on_zones(self, zones: Iterable[LoadedZone]) -> None:
        """The published zones as they are now (after a load, reload or transfer):
        publish the changed ones, notify secondaries."""
        for z in zones:
            if z.name not in self.wanted or z.soa is None:
                continue
            pub = self.zones.get(z.name)
            z.pins += 1  # kept (not freed by the policy swap) until diffed and replaced
            if pub is None:
                serial, changed = self._start_serial(z.name, z.serial)
                pub = Published(z.name, z, serial, self.wanted[z.name].publish_keys)
                self.zones[z.name] = pub
                self._store_serial(z.name, serial, z.serial)
                log.info("publishing zone %s serial %d", z.name, serial)
                if changed:  # changed while we were stopped: tell the secondaries
                    self._notify(pub)
                continue
            task = asyncio.get_running_loop().create_task(self._new_version(pub, z))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _new_version(self, pub: Published, z: LoadedZone) -> None:
        async with self._lock:  # versions are published in the order they came
            before = pub.zone
            try:
                await self._publish(pub, z)
            except Exception:  # a bug costs IXFR history, never the service
                log.exception("zone %s: publishing the new version failed", pub.name)
                pub.history.clear()
                pub.zone = z
            if before is not pub.zone:  # the previous version is no longer needed
                before.pins -= 1
                if not before.pins and before is not z:
                    await drive(free_steps(before), f"zone {pub.name} free")
            elif before is z and z.pins > 1:
                z.pins -= 1  # the same object again (changed in place): one pin is enough

    async def _publish(self, pub: Published, z: LoadedZone) -> None:
        pending, pub.pending = pub.pending, []
        if z is pub.zone:  # changed in place (IXFR received): the deltas say what changed
            if not pending and z.serial == pub.serial:
                return
            versions = [
                await drive(version_steps(pub.name, received), "IXFR relay") for received in pending
            ]
            if not versions:
                pub.history.clear()  # changed without known deltas: AXFR from now on
        else:
            d = await drive(diff_steps(pub.zone, z, pub.serial), "zone diff")
            if not d.deleted and not d.added and not rfc1982.gt(z.serial, pub.serial):
                pub.zone = z  # reloaded, nothing changed
                return
            versions = [d]
        serial = rfc1982.forward(pub.serial, z.serial)  # never backwards (RFC 1982 order)
        if serial != z.serial:
            log.warning(
                "zone %s changed without a SOA serial above %d in serial order (RFC 1982;"
                " its serial: %d): published as serial %d",
                pub.name,
                pub.serial,
                z.serial,
                serial,
            )
        if versions:  # the chain starts at what we published and ends at the new serial
            versions[0].old = pub.serial
            versions[-1].new = serial
        pub.history.extend(versions)
        while len(pub.history) > self.history_len:
            pub.history.popleft()
        old_serial = pub.serial
        pub.zone, pub.serial = z, serial
        self._store_serial(pub.name, serial, z.serial)
        log.info(
            "zone %s published: serial %d -> %d (%d deleted, %d added)",
            pub.name,
            old_serial,
            serial,
            sum(len(v.deleted) for v in versions),
            sum(len(v.added) for v in versions),
        )
        self._notify(pub)

    # ------------------------------------------------------------- answers
    def soa_answer(self, data: bytes, source: str) -> bytes | None:
        """An authoritative SOA/NS answer for a published zone's apex (None: not ours).

        A TSIG-signed question gets a signed answer (secondaries check the
        serial with their transfer key).
        """
        try:
            q = dns.message.from_wire(data, keyring=self.keys or None, ignore_trailing=True)
        except (dns.tsig.BadSignature, dns.tsig.BadTime, dns.message.UnknownTSIGKey):
            return error(data, dns.rcode.NOTAUTH)
        except (dns.exception.DNSException, ValueError):
            return None
        if len(q.question) != 1:
            return None
        pub = self.zones.get(q.question[0].name.to_text().lower())
        qtype = q.question[0].rdtype
        if pub is None or qtype not in (dns.rdatatype.SOA, dns.rdatatype.NS):
            return None
        if qtype == dns.rdatatype.NS:
            recs = list(render.apex_ns_rrs(pub.zone))
        else:
            recs = [with_serial(render.soa_rr(pub.zone), pub.serial)]
        flags = dns.flags.QR | dns.flags.AA | (q.flags & dns.flags.RD)
        qwire = data[12 : 12 + question_len(data)]
        msg = _HDR.pack(q.id, flags, 1, len(recs), 0, 0) + qwire + b"".join(recs)
        key = self.keys.get(q.keyname) if q.had_tsig and q.keyname is not None else None
        return Signer(key, q.mac or b"").sign(msg)

    async def serve(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> None:
        """Answer an AXFR/IXFR request (several messages over TCP)."""
        source = addr[0]
        try:
            q = dns.message.from_wire(data, keyring=self.keys or None, ignore_trailing=True)
        except (dns.tsig.BadSignature, dns.tsig.BadTime, dns.message.UnknownTSIGKey) as e:
            log.warning(
                "transfer request from %s refused: TSIG %s",
                self.client_text(source),
                type(e).__name__,
            )
            reply(error(data, dns.rcode.NOTAUTH), addr)
            return
        except (dns.exception.DNSException, ValueError):
            reply(error(data, dns.rcode.FORMERR), addr)
            return
        name = q.question[0].name.to_text().lower()
        qtype = q.question[0].rdtype
        # A validly signed request gets signed answers, errors included (RFC 8945).
        valid = self.keys.get(q.keyname) if q.had_tsig and q.keyname is not None else None
        error_signer = Signer(valid, q.mac or b"")
        pub = self.zones.get(name)
        if pub is None:
            reply(error_signer.sign(error(data, dns.rcode.NOTAUTH)), addr)
            return
        key = self._key_for(q, pub)
        if key is None and not self._allowed(source):
            log.warning(
                "transfer of %s to %s refused (not allowed)", name, self.client_text(source)
            )
            reply(error_signer.sign(error(data, dns.rcode.REFUSED)), addr)
            return
        signer = Signer(key, (q.mac or b"") if key is not None else b"")
        from_serial = client_serial(q) if qtype == _IXFR else None
        if not tcp:
            if qtype == _AXFR:
                reply(error_signer.sign(error(data, dns.rcode.REFUSED)), addr)
            else:  # IXFR over UDP: the SOA alone tells the client to use TCP
                reply(self._messages(data, pub, [], signer)[0], addr)
            return
        if from_serial is not None and not rfc1982.gt(pub.serial, from_serial):
            stream: Iterator[bytes] = iter(())
            kind = "IXFR (up to date)"
        else:
            chain = self._chain(pub, from_serial) if from_serial is not None else None
            if chain is not None:
                stream, kind = self._ixfr_rrs(pub, chain), f"IXFR from {from_serial}"
            else:
                stream, kind = render.zone_rrs(pub.zone), "AXFR"
        t0 = time.monotonic()
        n = await self._stream(
            data, pub, stream, signer, reply, addr, single_soa=kind.startswith("IXFR (up")
        )
        log.info(
            "transfer of %s serial %d to %s: %s, %d records in %.2fs%s",
            name,
            pub.serial,
            source,
            kind,
            n,
            time.monotonic() - t0,
            f", TSIG {key.name}" if key is not None else "",
        )

    def _key_for(self, q: dns.message.Message, pub: Published) -> dns.tsig.Key | None:
        if not q.had_tsig or q.keyname is None:
            return None
        keyname = q.keyname.to_text()
        if pub.keys and keyname not in pub.keys:
            return None
        return self.keys.get(q.keyname)

    def _allowed(self, source: str) -> bool:
        try:
            addr = ipaddress.ip_address(source.split("%", maxsplit=1)[0])
        except ValueError:
            return False
        return any(addr in net for net in self.allow)

    def _chain(self, pub: Published, serial: int) -> list[Version] | None:
        """History steps from *serial* to the current one, if we still have them."""
        steps = list(pub.history)
        for i, v in enumerate(steps):
            if v.old == serial:
                chain = steps[i:]
                if all(a.new == b.old for a, b in itertools.pairwise(chain)):
                    return chain if chain[-1].new == pub.serial else None
        return None

    def _ixfr_rrs(self, pub: Published, chain: list[Version]) -> Iterator[bytes]:
        soa = render.soa_rr(pub.zone)
        for v in chain:
            yield with_serial(soa, v.old)
            yield from v.deleted
            yield with_serial(soa, v.new)
            yield from v.added

    async def _stream(
        self,
        data: bytes,
        pub: Published,
        rrs: Iterator[bytes],
        signer: Signer,
        reply: Reply,
        addr: Any,
        single_soa: bool = False,
    ) -> int:
        """SOA, the records, SOA: in messages of ~16 kB, yielding to the loop between them."""
        soa = with_serial(render.soa_rr(pub.zone), pub.serial)
        conn = getattr(reply, "__self__", None)
        backlog = getattr(conn, "backlog", None)
        first = True
        count = 0
        batch: list[bytes] = [soa]
        size = len(soa)
        ended = single_soa
        while True:
            for rr in rrs:
                batch.append(rr)
                size += len(rr)
                count += 1
                if size >= MESSAGE_BYTES:
                    break
            else:
                if not ended:
                    batch.append(soa)
                    ended = True
            if batch:
                reply(signer.sign(message(data, batch, first)), addr)
                first = False
                batch, size = [], 0
            if ended:
                return count
            await asyncio.sleep(0)  # let queries through between messages
            while backlog is not None and backlog() > MAX_BACKLOG:
                await asyncio.sleep(0.005)

    def _messages(
        self, data: bytes, pub: Published, rrs: list[bytes], signer: Signer
    ) -> list[bytes]:
        soa = with_serial(render.soa_rr(pub.zone), pub.serial)
        return [signer.sign(message(data, [soa, *rrs], True))]


def version_steps(name: str, d: Any) -> Generator[None, None, Version]:
    """A received IXFR delta (client.Delta: RR tuples with SOAs) as a history step."""
    origin = dns.name.from_text(name)
    parts: list[list[bytes]] = [[], []]
    n = 0
    for i, rrs in enumerate((d.deleted, d.added)):
        for owner, ttl, rd in rrs:
            if owner == origin and rd.rdtype == dns.rdatatype.SOA:
                continue
            wire = owner.to_wire()
            parts[i].append(render.rr(wire.lower(), rd.rdtype, ttl, rd.to_wire()))
            n += 1
            if n % 200 == 0:
                yield
    return Version(d.old, d.new, parts[0], parts[1])
