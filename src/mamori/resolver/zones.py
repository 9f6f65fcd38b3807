"""Transferred policy zones inside the DNS service: subscriptions, NOTIFY, publishing.

The service owns one ``Subscriptions`` object. It starts a secondary
``Subscription`` per ``[[rpz]]`` zone with ``primary``, answers NOTIFY
messages (opcode 4) for those zones, and is the subscriptions' host: it swaps
a new policy version into the pipeline whenever a zone changes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode

from mamori.config import Config, RpzConfig
from mamori.policy.engine import Policy
from mamori.policy.rules import LoadedZone
from mamori.resolver.pipeline import Pipeline
from mamori.resolver.policy_stage import dispose, load_zone_steps, zone_settings
from mamori.steps import drive
from mamori.xfr.client import Delta
from mamori.xfr.primary import Publisher
from mamori.xfr.secondary import Subscription
from mamori.xfr.tsig import keyring

log = logging.getLogger(__name__)


class Subscriptions:
    def __init__(
        self, pipeline: Pipeline, current: Callable[[], Config], publisher: Publisher | None = None
    ) -> None:
        self.pipeline = pipeline
        self.publisher = publisher
        self.current = current
        self.subs: dict[str, Subscription] = {}
        self._placeholders: set[str] = set()  # zones published as "not applied"
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle
    def sync(self) -> None:
        """Start/stop subscriptions to match the configuration (start and SIGHUP)."""
        wanted = {z.name: z for z in self.current().rpz if z.primary}
        for name in list(self.subs):
            if name not in wanted or self.subs[name].rpz != wanted[name]:
                self.subs.pop(name).stop()
        for name, rpz in wanted.items():
            if name not in self.subs:
                sub = Subscription(rpz, self)
                self.subs[name] = sub
                sub.start()
            else:
                self._after_reload(self.subs[name])
        self.pipeline.notify_handler = self.on_notify if self.subs else None

    def _after_reload(self, sub: Subscription) -> None:
        """A reload loaded the zone's copy from disk: an expired zone stays off."""
        name = sub.rpz.name
        self._placeholders.discard(name)  # the reload replaced any placeholder
        if sub.status.expired and sub.rpz.on_expire == "stop":
            policy = self.pipeline.policy
            loaded = next(
                (
                    z
                    for z in (policy.all_zones if policy is not None else [])
                    if z.name == name and z.soa
                ),
                None,
            )
            if loaded is not None:
                sub.park(loaded)
                self.publish(name, None)

    def stop(self) -> None:
        for sub in self.subs.values():
            sub.stop()
        self.subs.clear()

    # ---------------------------------------------------------- ZoneHost
    def zone(self, name: str) -> LoadedZone | None:
        if name in self._placeholders:
            return None
        policy = self.pipeline.policy
        if policy is None:
            return None
        return next((z for z in policy.all_zones if z.name == name and z.soa is not None), None)

    async def load_file(self, rpz: RpzConfig) -> LoadedZone:
        zone: LoadedZone = await drive(load_zone_steps(rpz), f"zone {rpz.name} load")
        return zone

    def publish(
        self, name: str, zone: LoadedZone | None, deltas: list[Delta] | None = None
    ) -> None:
        """A new policy version in configured zone order, with *zone* for *name*.

        *deltas*: the IXFR differences just applied to *zone* in place (kept for
        serving IXFR onwards when the zone is also published).
        """
        if deltas and self.publisher is not None and name in self.publisher.zones:
            self.publisher.record_deltas(name, deltas)
        old = self.pipeline.policy
        held = {z.name: z for z in old.all_zones} if old is not None else {}
        if zone is None:
            self._placeholders.add(name)
            zone = LoadedZone(name)
        else:
            self._placeholders.discard(name)
        held[name] = zone
        zones, settings, only_held = [], [], []
        for rpz in self.current().rpz:
            if rpz.name in held and not rpz.apply:
                only_held.append(held[rpz.name])
            elif rpz.name in held:
                zones.append(held[rpz.name])
                settings.append(zone_settings(rpz))
        version = (old.version + 1) if old is not None else 1
        new = Policy(zones, settings, version, tuple(only_held))
        self.pipeline.set_policy(new)
        if old is None or all(z is not zone for z in old.all_zones):
            gc.freeze()  # a newly loaded index is long-lived: keep it out of full GC passes
        # A replaced zone (after an AXFR) is freed shard by shard, not in one go.
        task = asyncio.get_running_loop().create_task(dispose(old, new))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------- NOTIFY
    def on_notify(self, data: bytes, source: str) -> bytes | None:
        """Answer a NOTIFY (RFC 1996): NOERROR from a primary of the zone, else REFUSED."""
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
