"""``mamori serve``: the control plane, and the data plane it runs (in process or as workers).

The control plane is this process: configuration and reloads (SIGHUP), the
policy (policy.py: zone files, transfers, feeds -> compiled versions), zone
transfer in both directions, feed updates, the single writer of the query
and hit logs (writer.py) and of passive DNS, alerts, DNSBL zones, the
console, the APIs, the block page and /metrics. The data plane answers
queries: with ``workers = 1`` on this process's own event loop (no hop on the
hot path), otherwise in worker processes (supervisor.py) that map the same
compiled policy files.

Start-up order: the worker factory is forked before any thread exists; every
listening socket is bound before anything is served (a taken port is a clear
error, exit 2); the policy is mapped (or compiled) before the first query is
answered; zones held in memory (transfers, publishing) are loaded after.
SIGTERM/SIGINT stop: workers drain their in-flight queries, the logs are
flushed, then the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import uvloop

from mamori import config as config_mod
from mamori.config import Config
from mamori.control import dnsbl
from mamori.control.policy import PolicyManager
from mamori.control.subscriptions import Subscriptions
from mamori.control.supervisor import Supervisor
from mamori.control.view import Runtime, WorkerInfo
from mamori.control.watch import watch_zone_files
from mamori.control.writer import EventWriter, Inbox, group_days, queue_source
from mamori.control.zonetraffic import ZoneTraffic
from mamori.control.zygote import Zygote
from mamori.errors import ConfigError, StartupError
from mamori.feeds.schedule import FeedLocks, run_feeds
from mamori.policy.engine import Policy
from mamori.resolver.batchio import describe as udp_io
from mamori.resolver.batchio import serve_udp
from mamori.resolver.dataplane import DataPlane
from mamori.resolver.encrypted import bind_encrypted, load_certs
from mamori.resolver.events import AnswerTap, EventQueue
from mamori.resolver.policymap import Manifest
from mamori.resolver.server import TcpListener, adopt, bind_all
from mamori.store.base import QueryLogStore
from mamori.store.pdns_base import PdnsStore
from mamori.xfr.primary import Publisher

log = logging.getLogger("mamori.resolver.service")

# The event writer thread shares the GIL with the DNS loop (workers = 1); by default
# a thread asking for the GIL may wait 5 ms, which shows up as DNS tail latency.
GIL_SWITCH_INTERVAL = 0.0005
FLOW_CHECK_EVERY = 0.2  # seconds between looks at the writers' queues (workers > 1)
SHED_ON, SHED_OFF = 0.5, 0.2  # queue fill at which workers start / stop dropping at the source
STARTED_WITHIN = 10.0  # seconds the start waits for the workers before it is announced
REPAIR_PAUSE = 5.0  # seconds before a worker that failed on intact files is offered them again
COMPILED_CHECK_EVERY = 5.0  # seconds between stats of the compiled files in use


class Parts:
    """What ``mamori serve`` builds before its event loop runs (bound, opened, started)."""

    def __init__(self, cfg: Config, runtime: Runtime) -> None:
        self.cfg = cfg
        self.store: QueryLogStore | None = None  # opened after the sockets are bound
        self.runtime = runtime
        self.zygote: Zygote | None = None
        self.dns_socks: list[socket.socket] = []
        self.dnsbl_socks: list[list[socket.socket]] = []
        # builds the HTTP servers (listeners already bound) once the DNS side answers
        self.web_factory: Callable[[], list[Any]] = list
        self.web: list[Any] = []  # the uvicorn servers built by web_factory
        self.tap: AnswerTap | None = None  # passive DNS: answers to record
        self.nod_store: Callable[[], PdnsStore] | None = None  # opens it for [nod]
        self.on_stop: list[Callable[[], None]] = []


def fork_worker_factory(cfg: Config) -> Zygote | None:
    """The zygote, for ``workers > 1`` (call before any thread starts); None otherwise."""
    if cfg.server.workers <= 1:
        return None
    from mamori.resolver.worker import run_worker

    return Zygote.fork(partial(run_worker, extra=dnsbl.serve_in_worker))


def bind(cfg: Config, parts: Parts) -> None:
    """Bind every DNS listener now: a taken port fails before anything starts."""
    load_certs(cfg)  # a certificate that does not load fails the start here
    if cfg.server.workers <= 1:
        parts.dns_socks = bind_all(cfg.server.listen, cfg.server.tcp, reuse_port=False)
        try:
            parts.dns_socks += bind_encrypted(cfg, reuse_port=False)
        except StartupError:
            for s in parts.dns_socks:
                s.close()
            raise
    else:  # each worker binds its own set; this checks the addresses are free. Without
        # SO_REUSEPORT: a port another process holds (with or without it) counts as taken;
        # with it, a second mamori would silently share the first one's clients.
        for s in bind_all(cfg.server.listen, cfg.server.tcp, reuse_port=False):
            s.close()
        for s in bind_encrypted(cfg, reuse_port=False):
            s.close()
        for bl in cfg.dnsbl:  # the DNSBL zones too: every worker serves them
            for s in bind_all(bl.listen, True, reuse_port=False):
                s.close()
        return
    parts.dnsbl_socks = [bind_all(bl.listen, True, False) for bl in cfg.dnsbl]


class ControlPlane:
    """The parts of the control plane on its event loop."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.cfg = parts.cfg
        self.runtime = parts.runtime
        self.manager = PolicyManager(self.cfg)
        self.publisher = Publisher(self.cfg, self.cfg.store.path.parent / "zones")
        self.subs = Subscriptions(self.manager, lambda: self.cfg)
        self.traffic = ZoneTraffic(self.publisher, self.subs)
        self.manager.zone_listeners.append(self.publisher.on_zones)
        self.manager.on_deltas = self.publisher.record_deltas
        self.dataplane: DataPlane | None = None
        self.supervisor: Supervisor | None = None
        self.events: EventQueue | None = None
        self.inbox = Inbox(self.cfg.store.queue_size)
        self.writer: EventWriter | None = None
        self.stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._repairing: set[int] = set()  # workers whose policy failure is being handled
        # TCP connections workers hand over (zone transfers) are served here
        self.xfr_tcp = TcpListener(self.traffic, 30.0, 1000)

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        async with self._reload_lock:  # a SIGHUP during start-up waits for it
            await self._start()

    async def _start(self) -> None:
        cfg, parts, rt = self.cfg, self.parts, self.runtime
        await self.manager.start()
        assert parts.store is not None
        self.events = events = EventQueue(cfg.store.queue_size)
        sources = [queue_source(events), self.inbox.drain]
        self.writer = EventWriter(
            sources, parts.store, cfg.store.flush_interval, cfg.store.query_log_days,
            cfg.store.client_addresses,
            group_days(cfg.groups),
            backlog=lambda: len(events.items) + self.inbox.count,
            received_path=cfg.store.path.with_name(cfg.store.path.name + "-events"),
        )  # fmt: skip
        self.writer.hit_listeners.extend(rt.hit_listeners)
        self.writer.begin()  # what the last run lost, if it crashed
        self.writer.start()
        rt.writer, rt.subs = self.writer, self.subs
        spool = getattr(parts.store, "spool", None)  # ClickHouse: batches kept on disk
        if spool is not None:
            rt.spools["querylog"] = spool
        rt.policy_source = lambda: self.manager.policy
        rt.policy_version = lambda: self.manager.version
        rt.zone_source = self.manager.zone_infos
        if cfg.server.workers <= 1:
            dp = DataPlane(cfg, parts.dns_socks, self.events, tap=parts.tap, control=self.traffic)
            dp.set_policy(self.manager.policy)
            dp.set_routes(self.traffic.routes())
            self.manager.listeners.append(lambda _m, p: dp.set_policy(p))
            await dp.start()
            self.dataplane = dp
            rt.snapshot_source = lambda: [dp.snapshot()]
            rt.worker_source = self._in_process_info
        else:
            assert parts.zygote is not None
            sup = Supervisor(
                cfg, parts.zygote, self.inbox.put, self._tap_batch, self.traffic.forward,
                self._adopt, self._crash_loop, self._policy_failed,
            )  # fmt: skip
            sup.set_policy(self.manager.manifest)
            sup.set_routes(self.traffic.routes())
            self.manager.listeners.append(lambda m, _p: sup.set_policy(m))
            self.supervisor = sup
            if self.stopping.is_set():
                sup.stopping = True  # stopped during start-up: nothing to start
            sup.start(cfg.server.workers)
            self._spawn(self._watch_flow(sup))
            for bl in cfg.dnsbl:  # each worker serves them (and logs it at debug level)
                log.info("dnsbl %s (%s list) on %s: served by every worker", bl.zone, bl.kind,
                         ", ".join(str(e) for e in bl.listen))  # fmt: skip
            rt.snapshot_source = sup.snapshots
            rt.worker_source = self._worker_info
        rt.dropped_source = self._dropped
        self._spawn(self._watch_compiled())
        # Queries are answered from here on. Zones held in memory (transfers,
        # publishing) load now; the start is announced when they are in place.
        await self.manager.load_sources()
        self.subs.sync()
        self._set_routes()
        gc.freeze()  # long-lived structures: out of the way of full GC passes
        if self.supervisor is not None:
            await self.supervisor.wait_started(STARTED_WITHIN)
        if not self.stopping.is_set():
            announce(cfg)

    def _in_process_info(self) -> list[WorkerInfo]:
        dp = self.dataplane
        assert dp is not None
        return [WorkerInfo(0, os.getpid(), "running", 0, dp.started, 0.0, "",
                           self.manager.version)]  # fmt: skip

    def _worker_info(self) -> list[WorkerInfo]:
        sup = self.supervisor
        assert sup is not None
        return [
            WorkerInfo(
                s.number,
                s.pid,
                s.state,
                s.restarts,
                s.started,
                s.backoff if s.state == "backoff" else 0.0,  # the delay now, not the last one
                s.exit_status,
                s.applied,
            )
            for s in sup.slots
        ]

    def _dropped(self) -> tuple[int, int]:
        snaps = self.runtime.snapshots()
        events = sum(s.events_dropped for s in snaps) + self.inbox.dropped
        tap = sum(s.tap_dropped for s in snaps)
        if self.parts.tap is not None and self.supervisor is not None:
            tap += self.parts.tap.dropped
        return events, tap

    async def _watch_flow(self, sup: Supervisor) -> None:
        """Workers drop at the source while a writer's queue is over half full, and send
        again below a fifth (so they do not encode and send what would be dropped here)."""
        tap = self.parts.tap
        while not sup.stopping:
            await asyncio.sleep(FLOW_CHECK_EVERY)
            shed_events, shed_tap = sup.flow
            fill = self.inbox.count / max(self.inbox.limit, 1)
            shed_events = fill > (SHED_OFF if shed_events else SHED_ON)
            if tap is not None:
                fill = len(tap.items) / max(tap.limit, 1)
                shed_tap = fill > (SHED_OFF if shed_tap else SHED_ON)
            sup.set_flow(shed_events, shed_tap)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tap_batch(self, batch: list[tuple[float, bytes]]) -> None:
        tap = self.parts.tap
        if tap is not None:
            for item in batch:
                tap.put(item)

    def _adopt(self, sock: socket.socket, msg: bytes, rest: bytes) -> None:
        self._spawn(adopt(self.xfr_tcp, sock, msg, rest))

    def _policy_failed(self, worker: int, version: int, error: str) -> None:
        """A worker could not map a policy version: compile again what is damaged, then
        offer it the current version again (at most one repair at a time; a worker that
        fails with intact files is offered the version again after REPAIR_PAUSE)."""
        if version != self.manager.version or worker in self._repairing:
            return
        self._repairing.add(worker)

        async def repair() -> None:
            try:
                made = await self.manager.repair(f"worker {worker} could not map it: {error}")
                if not made:
                    await asyncio.sleep(REPAIR_PAUSE)
                    if self.supervisor is not None:
                        self.supervisor.retry(worker)
            finally:
                self._repairing.discard(worker)

        self._spawn(repair())

    async def _watch_compiled(self) -> None:
        """Compiled files must not change under the workers that map them: one replaced,
        rewritten or deleted on disk (by hand, a restore, a full disk) is compiled again."""
        while not self.stopping.is_set():
            await asyncio.sleep(COMPILED_CHECK_EVERY)
            changed = self.manager.files_changed()
            if changed:
                await self.manager.repair(f"changed on disk: {', '.join(changed)}")

    def _crash_loop(self, worker: int, message: str) -> None:
        for listener in self.runtime.crash_listeners:
            listener(worker, message)

    def _set_routes(self) -> None:
        routes = self.traffic.routes()
        if self.dataplane is not None:
            self.dataplane.set_routes(routes)
        if self.supervisor is not None:
            self.supervisor.set_routes(routes)

    def begin_stop(self) -> None:
        """SIGTERM/SIGINT: stop (workers that exit from now on are not restarted: under
        systemd's default KillMode they get the same SIGTERM)."""
        if self.supervisor is not None:
            self.supervisor.stopping = True
        self.stopping.set()

    # ---------------------------------------------------------------- reloads
    async def reload(self) -> None:
        """SIGHUP: read the configuration again; a bad one is refused, the old one stays."""
        try:
            new = config_mod.load(self.cfg.path)
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration: %s", e)
            return
        async with self._reload_lock:
            try:
                await self._apply(new)
            except Exception:
                log.exception("reload failed, keeping the running configuration")
                return
        log.info("configuration reloaded from %s", new.path)

    async def _apply(self, new: Config) -> None:
        if new.store.client_addresses != self.cfg.store.client_addresses:
            log.warning("reload: [store] client_addresses takes effect after a restart")
        self.cfg = new
        self.publisher.configure(new)
        await self.manager.reload(new)
        if self.dataplane is not None:
            self.dataplane.reconfigure(new)
        if self.supervisor is not None:
            self.supervisor.reconfigure(new)
        self.inbox.limit = new.store.queue_size
        if self.writer is not None:
            self.writer.configure(new.store.query_log_days, group_days(new.groups))
        self.subs.sync()
        self._set_routes()

    async def zone_files_changed(self) -> None:
        async with self._reload_lock:
            await self.manager.reload(self.cfg)

    # ------------------------------------------------------------------- stop
    async def stop(self) -> None:
        log.info("stopping: draining in-flight queries")
        self.subs.stop()
        if self.dataplane is not None:
            await self.dataplane.stop()
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.stop)
            if self.events is not None and self.events.dropped:
                log.warning("query log: %d events dropped (queue full)", self.events.dropped)


def announce(cfg: Config) -> None:
    addrs = ", ".join(str(e) for e in cfg.server.listen)
    ups = ", ".join(str(u) for u in cfg.upstream.servers)
    n = cfg.server.workers
    log.info(
        "mamori serving DNS on %s (udp%s, %d worker%s); upstreams: %s",
        addrs, "+tcp" if cfg.server.tcp else "", n, "s" if n > 1 else "", ups,
    )  # fmt: skip
    log.info("UDP I/O: %s", udp_io())
    for kind, eps in (("DNS over TLS", cfg.server.dot), ("DNS over HTTPS", cfg.server.doh),
                      ("DNS over QUIC", cfg.server.doq)):  # fmt: skip
        if eps:
            log.info("%s on %s", kind, ", ".join(str(e) for e in eps))


def run(parts: Parts) -> None:
    """Serve until SIGTERM/SIGINT; SIGHUP reloads."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)

    async def main() -> None:
        cfg = parts.cfg
        loop = asyncio.get_running_loop()
        plane = ControlPlane(parts)
        tasks: set[asyncio.Task[Any]] = set()

        def spawn(coro: Any) -> asyncio.Task[Any]:
            task = loop.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return task

        # Signals first: a SIGTERM during start-up stops cleanly once started, a SIGHUP
        # reloads once started (reloads wait for the start).
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, plane.begin_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: spawn(plane.reload()))
        await plane.start()
        rt = parts.runtime
        rt.config_source = lambda: plane.cfg
        rt.reload = plane.reload
        rt.zones_changed = plane.zone_files_changed
        feed_locks = FeedLocks()

        async def update_feed(name: str) -> dict[str, Any]:
            """Refresh now (console, REST API): after any update of it in progress."""
            verdict = await feed_locks.update(lambda: plane.cfg, name)
            if verdict.get("ok"):
                log.info("feed %s (refreshed now)", verdict.get("summary", name))
                await plane.zone_files_changed()
            elif verdict.get("gone"):  # removed or disabled while the refresh waited
                log.debug("feed %s: refresh dropped: %s", name, verdict["error"])
            else:
                log.error("feed %s: refresh refused: %s", name, verdict.get("error", ""))
            return verdict

        rt.update_feed = update_feed

        def feed_removed(name: str) -> None:
            feed_locks.last.pop(name, None)

        rt.feed_removed = feed_removed
        rt.feed_lock = feed_locks.lock
        dnsbl_servers = await dnsbl.start(cfg, parts.dnsbl_socks) if parts.dnsbl_socks else []
        background = [
            spawn(watch_zone_files(lambda: plane.cfg, plane.zone_files_changed)),
            spawn(run_feeds(lambda: plane.cfg, plane.zone_files_changed, feed_locks)),
        ]
        if parts.nod_store is not None:  # newly observed domains: refreshed periodically
            from mamori.discovery.nod_publish import run_nod

            nod = run_nod(lambda: plane.cfg, parts.nod_store, plane.zone_files_changed)
            background.append(spawn(nod))
        # The web imports and apps take ~0.2 s: built off the loop (it answers DNS meanwhile).
        parts.web = await asyncio.to_thread(parts.web_factory)
        web_tasks = [spawn(w.serve()) for w in parts.web]
        await plane.stopping.wait()
        for task in background:
            task.cancel()
        for server in dnsbl_servers:
            server.close()
        for w in parts.web:
            w.should_exit = True
        if web_tasks:
            await asyncio.wait(web_tasks, timeout=5)
        await plane.stop()

    uvloop.run(main())


# ----------------------------------------------------------- mamori zones serve
def run_primary(cfg: Config) -> None:
    """``mamori zones serve``: the publisher alone on [server] listen (no resolver)."""
    socks = bind_all(cfg.server.listen, cfg.server.tcp, reuse_port=False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        current = {"cfg": cfg}
        manager = PolicyManager(cfg, evaluate=False)
        publisher = Publisher(cfg, cfg.store.path.parent / "zones")
        subs = Subscriptions(manager, lambda: current["cfg"])
        traffic = ZoneTraffic(publisher, subs)
        manager.zone_listeners.append(publisher.on_zones)
        manager.on_deltas = publisher.record_deltas
        await manager.load_sources()
        subs.sync()
        sv = cfg.server
        tcp = TcpListener(
            traffic, sv.tcp_idle_timeout, sv.tcp_max_connections, sv.tcp_max_per_client,
            sv.tcp_read_timeout,
        )  # fmt: skip
        servers: list[Any] = []
        for sock in socks:
            if sock.type == socket.SOCK_DGRAM:
                servers.append(await serve_udp(sock, traffic))
            else:
                servers.append(await loop.create_server(tcp.factory, sock=sock))
        zones = ", ".join(z.name for z in cfg.rpz if z.publish) or "(none: set publish = true)"
        addrs = ", ".join(str(e) for e in cfg.server.listen)
        log.info("mamori serving zone transfers on %s; zones: %s", addrs, zones)
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)

        async def reload() -> None:
            try:
                new = config_mod.load(cfg.path, resolver=False)
            except ConfigError as e:
                log.error("reload refused, keeping the running configuration: %s", e)
                return
            current["cfg"] = new
            publisher.configure(new)
            await manager.reload(new)
            subs.sync()

        reloads: set[asyncio.Task[None]] = set()

        def on_hup() -> None:
            task = loop.create_task(reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        watcher = loop.create_task(
            watch_zone_files(lambda: current["cfg"], lambda: manager.reload(current["cfg"]))
        )
        await stopping.wait()
        watcher.cancel()
        subs.stop()
        for s in servers:
            s.close()

    uvloop.run(main())


__all__ = ["ControlPlane", "Manifest", "Parts", "Policy", "run", "run_primary"]
