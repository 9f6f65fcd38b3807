"""The workers of the data plane: started, fed, watched, restarted.

``workers = N`` (or ``"auto"``: one per core) runs N worker processes
(resolver/worker.py), forked by the zygote, each with its own SO_REUSEPORT
sockets bound for it alone: when a worker dies nobody else holds its sockets,
so the kernel stops sending it queries at once. The supervisor sends every
worker the configuration, the routes and each policy version as it comes,
receives their events, passive DNS answers and counters, and answers the
control traffic they forward. A worker that exits or is killed is started
again within a second and the fact logged; one that keeps dying (more than
``RESTARTS_BEFORE_BACKOFF`` restarts in ``BACKOFF_WINDOW`` seconds) is
restarted after a growing delay (1 s doubling to 60 s), shown on /metrics and
reported to the alert rules.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import marshal
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mamori.config import Config
from mamori.control import dnsbl
from mamori.control.zygote import Zygote, describe_status
from mamori.resolver import channel as ch
from mamori.resolver.dataplane import Snapshot
from mamori.resolver.encrypted import bind_encrypted
from mamori.resolver.events import Event
from mamori.resolver.policymap import Manifest
from mamori.resolver.routing import Routes
from mamori.resolver.server import bind_all

log = logging.getLogger("mamori.supervisor")

RESTARTS_BEFORE_BACKOFF = 3
BACKOFF_WINDOW = 30.0
BACKOFF_MAX = 60.0
STOP_GRACE = 8.0  # seconds workers get to drain before they are killed
UNRESPONSIVE_AFTER = 10.0  # seconds without a message from a running worker: it is stuck
WATCH_EVERY = 1.0
FLOW_LOG_EVERY = 60.0  # seconds between "writer behind" log lines


@dataclass
class WorkerSlot:
    """One worker position (its process changes when it is restarted)."""

    number: int
    pid: int = 0
    channel: ch.Channel | None = None
    state: str = "starting"  # starting, running, restarting, backoff, waiting, stopped
    # waiting: it could not map the current policy version; started again with the next one
    started: float = 0.0
    restarts: int = 0  # since the service started
    recent: collections.deque[float] = field(default_factory=collections.deque)
    backoff: float = 0.0  # seconds of the current delay (0: none)
    exit_status: str = ""
    snapshot: Snapshot | None = None
    applied: int = 0  # policy version in force
    failed: int = 0  # policy version it could not map (state waiting)
    last_seen: float = 0.0  # time.monotonic() of its last message


class Supervisor:
    """Workers as a group; the control plane's view of its data plane."""

    def __init__(
        self,
        cfg: Config,
        zygote: Zygote,
        on_events: Callable[[list[Event]], None],
        on_tap: Callable[[list[tuple[float, bytes]]], None] | None,
        forward: Callable[[bytes, Any, Callable[[bytes, Any], None], bool], None],
        adopt: Callable[[socket.socket, bytes, bytes], None],
        on_crash_loop: Callable[[int, str], None] | None = None,
        on_policy_failed: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.zygote = zygote
        self.on_events = on_events
        self.on_tap = on_tap
        self.forward = forward
        self.adopt = adopt
        self.on_crash_loop = on_crash_loop
        self.on_policy_failed = on_policy_failed
        self.slots: list[WorkerSlot] = []
        self.manifest = Manifest(0, ())
        self.routes = Routes()
        self.flow = (False, False)  # (shed events, shed passive DNS answers), sent to workers
        self._flow_logged = -FLOW_LOG_EVERY
        self.stopping = False
        self._exits: dict[int, str] = {}  # pid -> how it ended (from the zygote)
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.retired: Snapshot | None = None  # counters of worker processes that exited

    # ------------------------------------------------------------------ start
    def start(self, count: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.zygote.sock.fileno(), self._zygote_readable)
        for n in range(1, count + 1):
            slot = WorkerSlot(n)
            self.slots.append(slot)
            self._spawn(slot)
        self._watchdog = self._loop.create_task(self._watch())

    def _spawn(self, slot: WorkerSlot) -> None:
        """Bind the worker's own sockets, fork it (through the zygote), feed it."""
        self._timers.pop(slot.number, None)
        if self.stopping:
            return
        cfg = self.cfg
        try:
            socks = bind_all(cfg.server.listen, cfg.server.tcp, reuse_port=True)
            try:
                socks += bind_encrypted(cfg, reuse_port=True)  # DoT, DoH, DoQ: after port 53
                socks += dnsbl.bind_for_worker(cfg)  # after the DNS ones, as the worker expects
            except Exception:
                for s in socks:
                    s.close()
                raise
        except Exception as e:  # e.g. privileges dropped: try again later
            log.error("worker %d: cannot bind its sockets: %s", slot.number, e)
            self._restart_later(slot, "cannot bind")
            return
        ours, theirs = ch.pair()
        try:
            self.zygote.spawn(slot.number, theirs.fileno(), [s.fileno() for s in socks])
        except OSError as e:
            log.error("worker %d: the worker factory is gone (%s)", slot.number, e)
            ours.close()
            slot.state = "stopped"
            return
        finally:
            theirs.close()
            for s in socks:
                s.close()  # the worker holds its own copies; nobody else does
        slot.state, slot.started, slot.pid = "starting", time.time(), 0
        slot.snapshot = None
        slot.last_seen = time.monotonic()
        channel = ch.Channel(
            ours, lambda kind, payload, fds: self._message(slot, kind, payload, fds),
            lambda: self._worker_gone(slot, channel),
        )  # fmt: skip
        slot.channel = channel
        channel.start()
        channel.send(ch.CONFIG, pickle.dumps(cfg))
        channel.send(ch.ROUTES, _routes_wire(self.routes))
        channel.send(ch.POLICY, marshal.dumps(self.manifest.to_wire()))
        if any(self.flow):
            channel.send(ch.FLOW, marshal.dumps(self.flow))

    # ------------------------------------------------------------- broadcast
    def set_policy(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._broadcast(ch.POLICY, marshal.dumps(manifest.to_wire()))
        for slot in self.slots:
            if slot.state == "waiting" and slot.channel is None:
                self._spawn(slot)

    async def wait_started(self, timeout: float) -> None:
        """Return once no worker is starting any more (or after *timeout* seconds)."""
        deadline = time.monotonic() + timeout
        while any(s.state == "starting" for s in self.slots) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def retry(self, number: int) -> None:
        """Offer the current version again to worker *number*, which could not map it."""
        for slot in self.slots:
            if slot.number != number:
                continue
            if slot.state == "waiting" and slot.channel is None:
                self._spawn(slot)
            elif slot.channel is not None and slot.state == "running":
                slot.channel.send(ch.POLICY, marshal.dumps(self.manifest.to_wire()))

    def set_routes(self, routes: Routes) -> None:
        if routes == self.routes:
            return
        self.routes = routes
        self._broadcast(ch.ROUTES, _routes_wire(routes))

    def set_flow(self, shed_events: bool, shed_tap: bool) -> None:
        """Tell the workers to drop events / passive DNS answers at the source (counted there)
        while the control plane's writers are behind, and to send them again after."""
        flow = (shed_events, shed_tap)
        if flow == self.flow:
            return
        self.flow = flow
        now = time.monotonic()
        if any(flow) and now - self._flow_logged > FLOW_LOG_EVERY:
            self._flow_logged = now
            log.warning(
                "the query log / passive DNS writer is behind: workers drop %s at the source"
                " until it catches up (counted in mamori_events_dropped_total,"
                " mamori_pdns_dropped_total)",
                " and ".join(w for w, on in zip(("events", "answers"), flow, strict=True) if on),
            )
        self._broadcast(ch.FLOW, marshal.dumps(flow))

    def reconfigure(self, cfg: Config) -> None:
        if cfg.server.workers != self.cfg.server.workers:
            log.warning("reload: workers changes take effect after a restart")
        if cfg.server.listen != self.cfg.server.listen or cfg.server.tcp != self.cfg.server.tcp:
            log.warning("reload: listen/tcp changes take effect after a restart")
        self.cfg = cfg
        self._broadcast(ch.CONFIG, pickle.dumps(cfg))

    def _broadcast(self, kind: int, payload: bytes) -> None:
        for slot in self.slots:
            if slot.channel is not None and not slot.channel.closed:
                slot.channel.send(kind, payload)

    # ------------------------------------------------------------- messages
    def _message(self, slot: WorkerSlot, kind: int, payload: bytes, fds: list[int]) -> None:
        slot.last_seen = time.monotonic()
        if kind == ch.EVENTS:
            self.on_events(marshal.loads(payload))
        elif kind == ch.TAP:
            if self.on_tap is not None:
                self.on_tap(marshal.loads(payload))
        elif kind == ch.STATS:
            slot.snapshot = Snapshot.from_wire(marshal.loads(payload))
        elif kind == ch.APPLIED:
            slot.applied = marshal.loads(payload)
            if slot.state == "starting":  # configured and mapped: it serves from now on
                slot.state = "running"
                log.info("worker %d started (pid %d)", slot.number, slot.pid)
        elif kind == ch.POLICY_FAILED:
            version, error = marshal.loads(payload)
            if slot.state == "starting" and slot.channel is not None:
                # Nothing to serve with: let it go (its sockets with it, so the kernel sends
                # its share of clients to the others) until a version it can map exists.
                log.error("worker %d cannot map policy version %d (%s): it starts again with"
                          " the next version", slot.number, version, error)  # fmt: skip
                slot.state, slot.failed = "waiting", version
                slot.channel.send(ch.STOP, b"")
            if self.on_policy_failed is not None:
                self.on_policy_failed(slot.number, version, error)
        elif kind == ch.FORWARD:
            rid, data, addr = marshal.loads(payload)
            self.forward(data, addr, _replier(slot, rid), False)
        elif kind == ch.HANDOVER:
            msg, rest, _peer = marshal.loads(payload)
            for fd in fds[1:]:
                os.close(fd)
            if fds:
                self.adopt(socket.socket(fileno=fds[0]), msg, rest)
            return
        elif kind == ch.HELLO:
            _number, pid = marshal.loads(payload)
            slot.pid = pid
        for fd in fds:
            os.close(fd)

    def _zygote_readable(self) -> None:
        try:
            reports = self.zygote.reports()
        except EOFError:
            assert self._loop is not None
            self._loop.remove_reader(self.zygote.sock.fileno())
            if not self.stopping:
                log.error("the worker factory exited: dead workers cannot be replaced")
            return
        for what, a, b in reports:
            if what == "spawned":
                slot = self.slots[a - 1]
                slot.pid = slot.pid or b
            elif what == "exited":
                self._exits[a] = describe_status(b)

    # -------------------------------------------------------------- restarts
    def _worker_gone(self, slot: WorkerSlot, channel: ch.Channel) -> None:
        if slot.channel is not channel:
            return
        slot.channel = None
        if slot.snapshot is not None:  # its counters stay in the sums (they never go down)
            self.retired = retire(self.retired, slot.snapshot)
            slot.snapshot = None
        if self.stopping:
            slot.state = "stopped"
            return
        if slot.state == "waiting":
            if self.manifest.version != slot.failed:
                self._spawn(slot)  # a new version came while it was leaving
            return  # else started again by set_policy or retry
        slot.state = "restarting"
        assert self._loop is not None
        # The zygote's exit report usually follows the channel's end within a moment.
        self._loop.call_later(0.05, self._restart, slot, slot.pid)

    def _restart(self, slot: WorkerSlot, pid: int) -> None:
        how = self._exits.pop(pid, "exited")
        if self.stopping:  # e.g. systemd sent SIGTERM to every process of the service
            slot.state = "stopped"
            return
        slot.exit_status = how
        now = time.monotonic()
        slot.recent.append(now)
        while slot.recent and now - slot.recent[0] > BACKOFF_WINDOW:
            slot.recent.popleft()
        slot.restarts += 1
        if len(slot.recent) > RESTARTS_BEFORE_BACKOFF:
            slot.backoff = min(max(slot.backoff * 2, 1.0), BACKOFF_MAX)
            message = (
                f"worker {slot.number} (pid {pid}) {how}: {len(slot.recent)} restarts in"
                f" {BACKOFF_WINDOW:.0f}s, next start in {slot.backoff:.0f}s"
            )
            log.error("%s", message)
            if self.on_crash_loop is not None:
                self.on_crash_loop(slot.number, message)
            self._restart_later(slot, how, slot.backoff)
            return
        slot.backoff = 0.0
        log.warning("worker %d (pid %d) %s: restarting it", slot.number, pid, how)
        self._spawn(slot)

    def _restart_later(self, slot: WorkerSlot, why: str, delay: float = 1.0) -> None:
        assert self._loop is not None
        slot.state = "backoff"
        self._timers[slot.number] = self._loop.call_later(delay, self._spawn, slot)

    async def _watch(self) -> None:
        """Kill a worker that stopped talking (stuck in a loop, deadlocked): it is restarted
        like one that died. Workers send their counters at least every second."""
        while not self.stopping:
            await asyncio.sleep(WATCH_EVERY)
            now = time.monotonic()
            for slot in self.slots:
                silent = now - slot.last_seen
                if slot.channel is None or slot.pid == 0 or silent < UNRESPONSIVE_AFTER:
                    continue
                log.error("worker %d (pid %d) unresponsive for %.0fs: killing it",
                          slot.number, slot.pid, silent)  # fmt: skip
                slot.last_seen = now
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)

    # ------------------------------------------------------------------- stop
    async def stop(self) -> None:
        """Ask every worker to drain and exit; kill what is left after STOP_GRACE."""
        self.stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for timer in self._timers.values():
            timer.cancel()
        self._broadcast(ch.STOP, b"")
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(
            s.channel is not None and not s.channel.closed for s in self.slots
        ):
            await asyncio.sleep(0.05)
        for slot in self.slots:
            if slot.channel is not None and not slot.channel.closed:
                log.warning("worker %d did not stop in time: killed", slot.number)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)
                slot.channel.close()
            slot.state = "stopped"
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.zygote.sock.fileno())
        self.zygote.close()

    # ------------------------------------------------------------------ views
    def snapshots(self) -> list[Snapshot]:
        """The live workers' latest counters, and (worker -1) those of exited processes."""
        live = [s.snapshot for s in self.slots if s.snapshot is not None]
        return [*live, self.retired] if self.retired is not None else live


def _routes_wire(routes: Routes) -> bytes:
    return marshal.dumps((sorted(routes.published), routes.notify))


def _replier(slot: WorkerSlot, rid: int) -> Callable[[bytes, Any], None]:
    """A reply callback that sends an answer back to the worker that forwarded the message."""

    def reply(resp: bytes, _addr: Any) -> None:
        if slot.channel is not None:
            slot.channel.send(ch.REPLY, marshal.dumps((rid, resp)))

    return reply


def retire(total: Snapshot | None, last: Snapshot) -> Snapshot:
    """*total* (the counters of exited workers, worker -1) plus *last*, a worker's final
    counters; gauges (cache size) are not carried over."""
    stats = dict(total.stats) if total is not None else {}
    for k, v in last.stats.items():
        stats[k] = stats.get(k, 0) + v
    ups = {u.name: u for u in (total.upstreams if total is not None else ())}
    for u in last.upstreams:
        old = ups.get(u.name)
        if old is None:
            ups[u.name] = dataclasses.replace(u, up=True, srtt=0.0)
        else:
            ups[u.name] = dataclasses.replace(
                old,
                queries=old.queries + u.queries,
                errors=old.errors + u.errors,
                tcp_fallbacks=old.tcp_fallbacks + u.tcp_fallbacks,
                latency=tuple(a + b for a, b in zip(old.latency, u.latency, strict=True)),
                latency_sum=old.latency_sum + u.latency_sum,
            )
    return Snapshot(
        -1, 0, 0.0, 0, stats, 0, 0,
        (total.cache_evictions if total is not None else 0) + last.cache_evictions,
        (total.events_dropped if total is not None else 0) + last.events_dropped,
        (total.tap_dropped if total is not None else 0) + last.tap_dropped,
        tuple(ups.values()),
    )  # fmt: skip
