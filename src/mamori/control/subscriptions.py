"""Zones we transfer from primaries: one secondary per zone, and the NOTIFYs for them.

The control plane owns one ``Subscriptions``. It starts a secondary
``Subscription`` (xfr/secondary.py) per ``[[rpz]]`` zone with ``primary``,
whose host is the policy manager (the transferred zones become policy
versions there), and answers NOTIFY messages (RFC 1996) for those zones,
whichever data-plane worker received them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode

from mamori.config import Config
from mamori.xfr.secondary import Subscription, ZoneHost
from mamori.xfr.tsig import keyring

log = logging.getLogger(__name__)


class Subscriptions:
    def __init__(self, host: ZoneHost, current: Callable[[], Config]) -> None:
        self.host = host
        self.current = current
        self.subs: dict[str, Subscription] = {}

    def sync(self) -> None:
        """Start/stop subscriptions to match the configuration (start and SIGHUP)."""
        wanted = {z.name: z for z in self.current().rpz if z.primary}
        for name in list(self.subs):
            if name not in wanted or self.subs[name].rpz != wanted[name]:
                self.subs.pop(name).stop()
        for name, rpz in wanted.items():
            if name not in self.subs:
                sub = Subscription(rpz, self.host)
                self.subs[name] = sub
                sub.start()

    def stop(self) -> None:
        for sub in self.subs.values():
            sub.stop()
        self.subs.clear()

    def on_notify(self, data: bytes, source: str) -> bytes | None:
        """Answer a NOTIFY (RFC 1996): NOERROR from a primary of the zone, else REFUSED.

        None (no answer) for a malformed message or an unknown TSIG key.
        """
        try:
            msg = dns.message.from_wire(data, keyring=self._keyring(), ignore_trailing=True)
        except dns.message.UnknownTSIGKey:
            log.warning("NOTIFY from %s signed with an unknown TSIG key: ignored", source)
            return None
        except (dns.exception.DNSException, ValueError) as e:
            log.info("malformed NOTIFY from %s: %s", source, e)
            return None
        if msg.opcode() != dns.opcode.NOTIFY or len(msg.question) != 1 or msg.flags & dns.flags.QR:
            return None
        name = msg.question[0].name.to_text().lower()
        sub = self.subs.get(name)
        resp = dns.message.make_response(msg)
        resp.flags |= dns.flags.AA
        if sub is None or not sub.notify(source):
            log.warning(
                "NOTIFY for %s from %s refused (not a primary of a zone we hold)", name, source
            )
            resp.set_rcode(dns.rcode.REFUSED)
        return resp.to_wire()

    def _keyring(self) -> dict:  # type: ignore[type-arg]
        ring: dict = {}  # type: ignore[type-arg]
        for sub in self.subs.values():
            if sub.rpz.tsig is not None:
                ring.update(keyring(sub.rpz.tsig)[0])
        return ring
