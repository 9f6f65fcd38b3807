"""A data-plane worker process: its own sockets, the mapped policy, one channel home.

Forked by the control plane's supervisor (from a single-threaded zygote) with
exactly its own listening sockets (SO_REUSEPORT: the kernel spreads clients
over the workers) and one end of a channel. It waits for the configuration
and the first policy version, then serves; afterwards the control plane sends
new policy versions, configurations and control-traffic answers, and the
worker sends back its query events, passive DNS answers and counters in
batches (droppable: the DNS path never waits for the control plane).
Signals: SIGTERM stops it (draining in-flight queries); SIGINT and SIGHUP are
the control plane's business. The worker exits when its channel closes (the
control plane is gone).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import marshal
import os
import pickle
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop

from mamori.config import Config
from mamori.policy.engine import Policy
from mamori.resolver import channel as ch
from mamori.resolver.dataplane import DataPlane
from mamori.resolver.encrypted import encrypted_count
from mamori.resolver.events import AnswerTap, EventQueue
from mamori.resolver.policymap import Manifest, PolicyMapError, PolicyMapper
from mamori.resolver.query import Reply
from mamori.resolver.routing import Routes

log = logging.getLogger("mamori.worker")

EVENTS_PER_MESSAGE = 2_000
STATS_EVERY = 1.0  # seconds between counter snapshots sent home (at most)
FORWARD_TIMEOUT = 10.0  # seconds a forwarded UDP message waits for its answer

# Services a worker runs beside the resolver on the sockets after its DNS ones (the
# [[dnsbl]] zones): given by the control plane, whose packages the data plane does not
# import. Called with the configuration and those sockets; returns what to close at stop.
ExtraServices = Callable[[Config, list[socket.socket]], Awaitable[list[Any]]]


class Worker:
    """The worker's side of its channel and its data plane."""

    def __init__(
        self,
        number: int,
        chan: socket.socket,
        socks: list[socket.socket],
        extra: ExtraServices | None = None,
    ) -> None:
        self.number = number
        self.socks = socks
        self.extra = extra
        self.channel = ch.Channel(chan, self.on_message, self.on_close)
        self.mapper = PolicyMapper()
        self.cfg: Config | None = None
        self.policy: Policy | None = None
        self.routes = Routes()
        self.dp: DataPlane | None = None
        self.policy_received = False
        self.configured = asyncio.Event()  # the configuration and a first policy version came
        self.stopping = asyncio.Event()
        self.pending: dict[int, tuple[Reply, Any, float]] = {}
        # the control plane's writers are behind: drop (and count) here, not after sending
        self.shed_events = False
        self.shed_tap = False
        self._ids = itertools.count(1)

    # ------------------------------------------------------------- messages
    def on_message(self, kind: int, payload: bytes, fds: list[int]) -> None:
        for fd in fds:  # nothing the control plane sends carries descriptors
            os.close(fd)
        if kind == ch.CONFIG:
            cfg = pickle.loads(payload)
            self.cfg = cfg
            if self.dp is not None:
                self.dp.reconfigure(cfg)
        elif kind == ch.POLICY:
            self._apply_policy(Manifest.from_wire(marshal.loads(payload)))
        elif kind == ch.ROUTES:
            published, notify = marshal.loads(payload)
            self.routes = Routes(frozenset(published), bool(notify))
            if self.dp is not None:
                self.dp.set_routes(self.routes)
        elif kind == ch.REPLY:
            rid, resp = marshal.loads(payload)
            waiting = self.pending.pop(rid, None)
            if waiting is not None and resp is not None:
                waiting[0](resp, waiting[1])
        elif kind == ch.STOP:
            self.stopping.set()
        elif kind == ch.FLOW:
            self.shed_events, self.shed_tap = marshal.loads(payload)
        if self.cfg is not None and self.policy_received:
            self.configured.set()

    def _apply_policy(self, manifest: Manifest) -> None:
        try:
            policy = self.mapper.build(manifest) if manifest.zones else None
        except PolicyMapError as e:
            log.error("worker %d: policy version %d not applied: %s", self.number,
                      manifest.version, e)  # fmt: skip
            self.channel.send(ch.POLICY_FAILED, marshal.dumps((manifest.version, str(e))))
            return
        self.policy = policy
        self.policy_received = True
        if self.dp is not None:
            self.dp.set_policy(policy)
        self.channel.send(ch.APPLIED, marshal.dumps(manifest.version))

    def on_close(self) -> None:
        self.stopping.set()  # the control plane is gone

    # ----------------------------------------------------------- ControlLink
    def forward(self, data: bytes, addr: Any, reply: Reply, tcp: bool) -> None:
        """Send control traffic home: a TCP connection whole, a UDP message and its answer."""
        conn = getattr(reply, "__self__", None)
        if tcp and hasattr(conn, "take_over"):
            conn.take_over(self._hand_over, data)  # type: ignore[union-attr]
            return
        rid = next(self._ids)
        self.pending[rid] = (reply, addr, time.monotonic() + FORWARD_TIMEOUT)
        self.channel.send(ch.FORWARD, marshal.dumps((rid, data, tuple(addr))))

    def _hand_over(self, sock: socket.socket, msg: bytes, rest: bytes) -> None:
        peer = sock.getpeername()
        fd = sock.detach()
        self.channel.send(ch.HANDOVER, marshal.dumps((msg, rest, tuple(peer))), fds=(fd,))

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        self.channel.start()
        self.channel.send(ch.HELLO, marshal.dumps((self.number, os.getpid())))
        stop_wait = asyncio.ensure_future(self.stopping.wait())
        ready_wait = asyncio.ensure_future(self.configured.wait())
        await asyncio.wait({stop_wait, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
        if self.stopping.is_set() or self.cfg is None:
            ready_wait.cancel()
            return
        cfg = self.cfg
        events = EventQueue(cfg.store.queue_size)
        tap = AnswerTap(cfg.pdns.queue_size) if cfg.pdns.enabled else None
        n_dns = len(cfg.server.listen) * (2 if cfg.server.tcp else 1) + encrypted_count(cfg)
        dns_socks, rest = self.socks[:n_dns], self.socks[n_dns:]
        self.dp = dp = DataPlane(cfg, dns_socks, events, tap=tap, control=self, worker=self.number)
        dp.set_policy(self.policy)
        dp.set_routes(self.routes)
        await dp.start()
        extras = await self.extra(cfg, rest) if self.extra is not None and rest else []
        log.debug("worker %d (pid %d) serving", self.number, os.getpid())
        flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        await stop_wait
        flusher.cancel()
        for server in extras:
            server.close()
        await dp.stop()
        self._flush()
        self._send_stats()
        self.channel.close()

    async def _flush_forever(self) -> None:
        """Events every ``[store] flush_interval``; counters at least every STATS_EVERY
        seconds whatever that interval (they are also the supervisor's sign of life)."""
        last_flush = last_stats = time.monotonic()
        while True:
            assert self.dp is not None
            interval = self.dp.cfg.store.flush_interval
            await asyncio.sleep(min(interval, STATS_EVERY))
            try:
                now = time.monotonic()
                if now - last_flush >= interval:
                    last_flush = now
                    self._flush()
                if now - last_stats >= min(STATS_EVERY, interval):
                    last_stats = now
                    self._send_stats()
                    self._expire_forwards(now)
            except Exception:  # a bug costs a batch, never the worker
                log.exception("worker %d: sending home failed", self.number)

    def _flush(self) -> None:
        """Send the queued events and passive DNS answers home (dropped, counted, if full)."""
        dp = self.dp
        if dp is None:
            return
        send = self.channel.send
        while batch := dp.events.drain(EVENTS_PER_MESSAGE):
            if self.shed_events or not send(ch.EVENTS, marshal.dumps(batch), droppable=True):
                dp.events.dropped += len(batch)
        if dp.tap is not None:
            while answers := dp.tap.drain(EVENTS_PER_MESSAGE):
                if self.shed_tap or not send(ch.TAP, marshal.dumps(answers), droppable=True):
                    dp.tap.dropped += len(answers)

    def _send_stats(self) -> None:
        if self.dp is not None:
            self.channel.send(ch.STATS, marshal.dumps(self.dp.snapshot().to_wire()), droppable=True)

    def _expire_forwards(self, now: float) -> None:
        for rid in [r for r, (_, _, until) in self.pending.items() if until < now]:
            del self.pending[rid]


def run_worker(
    number: int,
    chan: socket.socket,
    socks: list[socket.socket],
    extra: ExtraServices | None = None,
) -> None:
    """The body of a worker process (after fork); returns when the worker is done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    async def main() -> None:
        worker = Worker(number, chan, socks, extra)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, worker.stopping.set)
        await worker.run()

    uvloop.run(main())
