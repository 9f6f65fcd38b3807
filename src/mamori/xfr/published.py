"""A published zone's state kept for secondaries: its serial on disk (never going
backwards across restarts) and the NOTIFY messages sent when it changes."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamori.config import Endpoint, TsigSpec
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

    def _stored_serial(self, name: str) -> int:
        try:
            return int(json.loads(self._state(name).read_text())["serial"])
        except (OSError, ValueError, KeyError):
            return 0

    def _store_serial(self, name: str, serial: int) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._state(name).with_suffix(".tmp")
            tmp.write_text(json.dumps({"serial": serial, "time": time.time()}))
            tmp.replace(self._state(name))
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
