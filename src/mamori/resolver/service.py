"""Service lifecycle: bind, serve, reload on SIGHUP, drain and stop on SIGTERM.

Policy zones are also reloaded when their files change (watch.py).

One process (``workers = 1``) runs the DNS loop on uvloop and a writer thread
for query events. With ``workers = N`` the parent binds N sets of sockets with
SO_REUSEPORT (so a taken port fails fast, before anything starts), forks N
worker processes that each serve one set, and itself only writes the events
the workers send it: the store keeps a single writer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import uvloop

from mamori import config as config_mod
from mamori.config import Config
from mamori.errors import ConfigError
from mamori.feeds.publish.dnsbl import start as dnsbl_start
from mamori.feeds.schedule import run_feeds
from mamori.policy.engine import Policy
from mamori.resolver.events import (
    AnswerTap,
    EventQueue,
    EventWriter,
    deque_source,
)
from mamori.resolver.pipeline import Pipeline
from mamori.resolver.policy_stage import (
    dispose,
    load_policy,
    load_policy_steps,
    run_steps_async,
)
from mamori.resolver.primary_only import PrimaryOnlyPipeline
from mamori.resolver.server import TcpListener, UdpServer, bind_all
from mamori.resolver.watch import watch_zone_files
from mamori.resolver.zones import Subscriptions
from mamori.store.base import QueryLogStore
from mamori.xfr.primary import Publisher

log = logging.getLogger(__name__)

DRAIN_GRACE = 3.0
HOUSEKEEPING_EVERY = 60.0
# The event writer thread shares the GIL with the DNS loop; by default a thread
# asking for the GIL may wait 5 ms, which shows up as DNS tail latency. 0.5 ms
# keeps p99 low; switches only happen when both threads want to run.
GIL_SWITCH_INTERVAL = 0.0005


class Runtime:
    """The running service's parts, for observers in the same process (/metrics)."""

    def __init__(self) -> None:
        self.svc: DnsService | None = None
        self.events: EventQueue | None = None
        self.writer: EventWriter | None = None
        self.subs: Subscriptions | None = None
        self.answer_tap: AnswerTap | None = None
        # given to the query-log writer: called with each batch's policy hits
        self.hit_listeners: list[Callable[[list[tuple[float, str, str, str, str, str]]], None]] = []


class DnsService:
    """The listeners and the pipeline inside one event loop."""

    def __init__(
        self,
        cfg: Config,
        events: EventQueue,
        socks: list[socket.socket],
        policy: Policy | None = None,
        primary_only: bool = False,
    ) -> None:
        self.cfg = cfg
        self.events = events
        self.socks = socks
        kind = PrimaryOnlyPipeline if primary_only else Pipeline
        self.pipeline = kind(cfg, events, policy)
        self.tcp = TcpListener(
            self.pipeline, cfg.server.tcp_idle_timeout, cfg.server.tcp_max_connections
        )
        self.transports: list[asyncio.BaseTransport] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.stopped = asyncio.Event()
        self._house: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.socks:
            if sock.type == socket.SOCK_DGRAM:
                tr, _ = await loop.create_datagram_endpoint(
                    lambda: UdpServer(self.pipeline), sock=sock
                )
                self.transports.append(tr)
            else:
                self.servers.append(await loop.create_server(self.tcp.factory, sock=sock))
        self._house = loop.create_task(self._housekeeping())

    def reload(self, cfg: Config) -> None:
        if cfg.server.listen != self.cfg.server.listen or cfg.server.tcp != self.cfg.server.tcp:
            log.warning("reload: listen/tcp changes take effect after a restart")
        if cfg.server.workers != self.cfg.server.workers:
            log.warning("reload: workers changes take effect after a restart")
        self.pipeline.configure(cfg)
        self.tcp.idle_timeout = cfg.server.tcp_idle_timeout
        self.tcp.max_connections = cfg.server.tcp_max_connections
        self.events.limit = cfg.store.queue_size
        self.cfg = cfg
        log.info("configuration reloaded from %s", cfg.path)

    async def _housekeeping(self) -> None:
        interval = self.cfg.server.stats_interval
        last_stats = time.monotonic()
        while True:
            await asyncio.sleep(min(HOUSEKEEPING_EVERY, interval or HOUSEKEEPING_EVERY))
            self.pipeline.cache.purge_stale(time.time())
            interval = self.cfg.server.stats_interval
            if interval and time.monotonic() - last_stats >= interval:
                last_stats = time.monotonic()
                self.log_stats()

    def log_stats(self) -> None:
        s = self.pipeline.stats.as_dict()
        c = self.pipeline.cache
        ups = ", ".join(
            f"{u.name} q={u.queries} err={u.errors} srtt={u.srtt * 1000:.1f}ms"
            for u in self.pipeline.pool.upstreams
        )
        log.info(
            "stats: %s cache_entries=%d cache_bytes=%d events_dropped=%d upstreams: %s",
            " ".join(f"{k}={v}" for k, v in s.items()),
            len(c),
            c.bytes,
            self.events.dropped,
            ups,
        )

    async def stop(self) -> None:
        """Stop accepting, let in-flight queries finish (bounded), close upstreams."""
        if self._house is not None:
            self._house.cancel()
        for tr in self.transports:
            tr.close()
        for srv in self.servers:
            srv.close()
        pending = set(self.pipeline.tasks)
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_GRACE)
        for conn in list(self.tcp.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.pipeline.close()
        self.log_stats()
        self.stopped.set()


def _wire_publisher(pipeline: Pipeline, publisher: Publisher) -> None:
    """Route transfer requests and apex SOA queries to the publisher (if it has zones)."""
    pipeline.xfr_handler = publisher.serve if publisher.active else None
    pipeline.local_answer = publisher.soa_answer if publisher.active else None


def _reload_config(path: str, resolver: bool = True) -> Config | None:
    try:
        return config_mod.load(path, resolver=resolver)
    except ConfigError as e:
        log.error("reload refused, keeping the running configuration: %s", e)
        return None


def _install_signals(
    loop: asyncio.AbstractEventLoop, on_stop: Callable[[], None], on_reload: Callable[[], None]
) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop)
    loop.add_signal_handler(signal.SIGHUP, on_reload)


def serve_loop(
    cfg: Config,
    socks: list[socket.socket],
    events: EventQueue,
    ready: Callable[[], None],
    policy: Policy | None = None,
    primary_only: bool = False,
    update_feeds: bool = True,
    dnsbl_socks: list[list[socket.socket]] | None = None,
    answer_tap: AnswerTap | None = None,
    web: list[Any] | None = None,
    runtime: Runtime | None = None,
) -> None:
    """Run one DNS event loop until SIGTERM/SIGINT; SIGHUP reloads config and zones.

    *update_feeds*: refresh the [[feed]] zones here (one process does it).
    """

    sys.setswitchinterval(GIL_SWITCH_INTERVAL)

    async def main() -> None:
        svc = DnsService(cfg, events, socks, policy, primary_only)
        svc.pipeline.answer_tap = answer_tap
        if runtime is not None:
            runtime.svc = svc
        await svc.start()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        reloading: set[asyncio.Task[None]] = set()

        lock = asyncio.Lock()  # one reload at a time (SIGHUP or a zone file change)

        async def swap_policy(new: Config) -> None:
            # Zones are parsed step by step on this loop (a parser thread would
            # hold the GIL against it): queries keep flowing with the old policy.
            old = svc.pipeline.policy
            pol = await run_steps_async(load_policy_steps(new.rpz, old))
            if new is not svc.cfg:
                svc.reload(new)
            publisher.configure(svc.cfg)
            svc.pipeline.set_policy(pol)
            # In the same loop turn: routes for published zones, and transferred
            # zones' state (an expired zone must not come back from its file).
            _wire_publisher(svc.pipeline, publisher)
            subs.sync()
            await dispose(old, pol)
            gc.freeze()  # the new indexes are long-lived: keep them out of full collections

        async def reload_async() -> None:
            new = _reload_config(str(cfg.path), resolver=not primary_only)
            if new is None:
                return
            async with lock:
                try:
                    await swap_policy(new)
                except Exception:
                    log.exception("reload failed, keeping the running configuration")

        async def reload_zones() -> None:
            async with lock:
                await swap_policy(svc.cfg)

        def reload() -> None:
            task = loop.create_task(reload_async())
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        _install_signals(loop, stopping.set, reload)
        dnsbl_servers = await dnsbl_start(cfg, dnsbl_socks) if dnsbl_socks else []
        watcher = loop.create_task(watch_zone_files(lambda: svc.cfg, reload_zones))
        feeds = loop.create_task(run_feeds(lambda: svc.cfg)) if update_feeds else None
        web_tasks = [loop.create_task(w.serve()) for w in web or []]
        publisher = Publisher(svc.cfg, svc.cfg.store.path.parent / "zones")
        svc.pipeline.policy_listeners.append(publisher.on_policy)
        publisher.on_policy(None, svc.pipeline.policy)
        _wire_publisher(svc.pipeline, publisher)
        subs = Subscriptions(svc.pipeline, lambda: svc.cfg, publisher)
        subs.sync()  # transferred zones: start the secondaries
        if runtime is not None:
            runtime.subs = subs
        # Policy indexes and settings are long-lived: move them out of the cyclic
        # GC's way, so full collections do not walk millions of entries.
        gc.freeze()
        ready()
        await stopping.wait()
        log.info("stopping: draining in-flight queries")
        watcher.cancel()
        for server in dnsbl_servers:
            server.close()
        if feeds is not None:
            feeds.cancel()
        for w in web or []:
            w.should_exit = True
        if web_tasks:
            await asyncio.wait(web_tasks, timeout=5)
        subs.stop()
        await svc.stop()

    uvloop.run(main())


def run(
    cfg: Config,
    store: QueryLogStore,
    primary_only: bool = False,
    answer_tap: AnswerTap | None = None,
    web: list[Any] | None = None,
    runtime: Runtime | None = None,
) -> None:
    """Serve until stopped. Sockets are bound first: a taken port fails fast.

    *primary_only* (``mamori zones serve``): one process serving zone transfers only.
    *web*: HTTP servers (uvicorn) run in the DNS loop.
    """
    policy = load_policy(cfg.rpz, None, strict=True)
    workers = 1 if primary_only else cfg.server.workers
    if workers == 1:
        socks = bind_all(cfg.server.listen, cfg.server.tcp, reuse_port=False)
        dnsbl_socks = [] if primary_only else [bind_all(bl.listen, True, False) for bl in cfg.dnsbl]
        events = EventQueue(cfg.store.queue_size)
        writer = EventWriter(
            deque_source(events), store, cfg.store.flush_interval, cfg.store.query_log_days
        )
        writer.start()
        if runtime is not None:
            runtime.events, runtime.writer, runtime.answer_tap = events, writer, answer_tap
            writer.hit_listeners.extend(runtime.hit_listeners)
        try:
            serve_loop(
                cfg,
                socks,
                events,
                lambda: _announce(cfg, 1, primary_only),
                policy,
                primary_only,
                update_feeds=not primary_only,
                dnsbl_socks=dnsbl_socks,
                answer_tap=answer_tap,
                web=web,
                runtime=runtime,
            )
        finally:
            writer.stop()
            if events.dropped:
                log.warning("query log: %d events dropped (queue full)", events.dropped)
        return
    from mamori.resolver.workers import run_workers

    run_workers(cfg, store, policy)


def _announce(cfg: Config, workers: int, primary_only: bool = False) -> None:
    addrs = ", ".join(str(e) for e in cfg.server.listen)
    if primary_only:
        zones = ", ".join(z.name for z in cfg.rpz if z.publish) or "(none: set publish = true)"
        log.info("mamori serving zone transfers on %s; zones: %s", addrs, zones)
        return
    ups = ", ".join(str(u) for u in cfg.upstream.servers)
    log.info(
        "mamori serving DNS on %s (udp%s, %d worker%s); upstreams: %s",
        addrs,
        "+tcp" if cfg.server.tcp else "",
        workers,
        "s" if workers > 1 else "",
        ups,
    )
