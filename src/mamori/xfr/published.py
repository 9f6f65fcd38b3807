"""A published zone's state kept for secondaries: its serial on disk (never going
backwards across restarts, in RFC 1982 serial order) and the NOTIFY messages
sent when it changes.

The state file ``<store dir>/zones/<zone>.published.json`` holds ``serial``
(what secondaries were last given) and ``source_serial`` (the zone's own SOA
serial at that time). At start the serial to publish is decided by
``start_serial``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamori.atomicfile import write_atomic
from mamori.config import Endpoint, TsigSpec
from mamori.dnsutil import serial as rfc1982
from mamori.policy.rules import LoadedZone
from mamori.xfr.diff import Version
from mamori.xfr.tsig import keyring

log = logging.getLogger("mamori.xfr.primary")

NOTIFY_TRIES = 5
NOTIFY_INTERVAL = 2.0


@dataclass
class Published:
    name: str
    zone: LoadedZone
    serial: int
    keys: tuple[str, ...] = ()  # TSIG key names allowed for this zone (empty: any known key)
    history: deque[Version] = field(default_factory=deque)
    pending: list[Any] = field(default_factory=list)  # IXFR deltas received (client.Delta)


class Announcer:
    """NOTIFY and the stored serial, for the Publisher."""

    state_dir: Path
    tasks: set[asyncio.Task[None]]
    notify_to: tuple[Endpoint, ...]
    key_specs: dict[str, TsigSpec]

    # -------------------------------------------------------------- serial
    def _state(self, name: str) -> Path:
        return self.state_dir / f"{name.rstrip('.')}.published.json"

    def _stored_serial(self, name: str) -> tuple[int, int | None] | None:
        """(published serial, source serial or None for older state files), or None."""
        try:
            doc = json.loads(self._state(name).read_text())
            serial = rfc1982.check(int(doc["serial"]))
            source = doc.get("source_serial")
            return serial, None if source is None else rfc1982.check(int(source))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("zone %s: published serial state unreadable (%s): ignored", name, e)
            return None

    def _start_serial(self, name: str, source: int) -> tuple[int, bool]:
        """The serial to publish a zone under at start (``start_serial``), logged when
        it is not the zone's own; and whether it differs from the one published before
        the stop (secondaries are then sent NOTIFY, as BIND does when it loads a zone)."""
        stored = self._stored_serial(name)
        serial = start_serial(source, stored)
        if serial != source:
            log.warning(
                "zone %s: its SOA serial %d is not above the published serial in serial"
                " order (RFC 1982): published as serial %d",
                name,
                source,
                serial,
            )
        return serial, stored is not None and serial != stored[0]

    def _store_serial(self, name: str, serial: int, source: int) -> None:
        try:
            doc = {"serial": serial, "source_serial": source, "time": time.time()}
            # synced before it is used: a crash or power loss never brings back an older
            # serial (secondaries would ignore the zone until it passed theirs)
            write_atomic(self._state(name), json.dumps(doc))
        except OSError as e:
            log.warning("zone %s: cannot store the published serial: %s", name, e)

    # -------------------------------------------------------------- NOTIFY
    def _notify(self, pub: Published) -> None:
        for target in self.notify_to:
            task = asyncio.get_running_loop().create_task(self._send_notify(pub, target))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send_notify(self, pub: Published, target: Endpoint) -> None:
        import dns.asyncquery

        msg = dns.message.make_query(pub.name, dns.rdatatype.SOA)
        msg.flags = dns.flags.AA  # (the opcode lives in the flags: set it after)
        msg.set_opcode(dns.opcode.NOTIFY)
        assert pub.zone.soa is not None  # the SOA with the serial, as BIND sends it
        soa = pub.zone.soa.rdata.replace(serial=pub.serial)
        msg.answer.append(dns.rrset.from_rdata(pub.name, pub.zone.soa.ttl, soa))
        if pub.keys and pub.keys[0] in self.key_specs:
            ring, name = keyring(self.key_specs[pub.keys[0]])
            msg.use_tsig(ring, name)
        for _ in range(NOTIFY_TRIES):
            try:
                r = await dns.asyncquery.udp(
                    msg, target.host, port=target.port, timeout=NOTIFY_INTERVAL
                )
                if r.rcode() == dns.rcode.NOERROR:
                    log.info("zone %s: NOTIFY sent to %s (serial %d)", pub.name, target, pub.serial)
                else:
                    rcode = dns.rcode.to_text(r.rcode())
                    log.warning("zone %s: NOTIFY to %s answered %s", pub.name, target, rcode)
                return
            except (dns.exception.DNSException, OSError):
                continue
        log.warning("zone %s: no answer to NOTIFY from %s", pub.name, target)


def start_serial(source: int, stored: tuple[int, int | None] | None) -> int:
    """The serial a published zone is served under when mamori starts.

    *source*: the zone's own SOA serial now; *stored*: (the serial published
    before the stop, the zone's own serial then, None if not recorded), or
    None for a zone never published. Compared in RFC 1982 serial order:

    - never published: *source*;
    - *source* greater than the published serial (also across the wrap,
      4000000000 -> 1158658354): *source*;
    - *source* equal to the published serial, or unchanged since it was
      published: the published serial (same content, nothing to transfer);
    - otherwise (the zone changed without a greater serial while mamori was
      stopped, or an older state file without the source serial): the
      published serial + 1, so secondaries transfer the new content.
    """
    if stored is None:
        return source
    published, was = stored
    if rfc1982.gt(source, published):
        return source
    if source in (published, was):
        return published
    return rfc1982.add(published, 1)
