"""One data plane: the DNS listeners of one event loop feeding one pipeline.

The control plane drives it through a handful of methods (``set_policy``,
``set_routes``, ``reconfigure``, ``snapshot``, ``stop``): directly when it runs
in the same process (``workers = 1``), through the worker's channel otherwise
(worker.py). Nothing here loads zones, writes logs or talks HTTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from mamori.config import Config
from mamori.policy.engine import Policy
from mamori.resolver.batchio import BatchedUdp, serve_udp
from mamori.resolver.encrypted import Encrypted, encrypted_count
from mamori.resolver.events import AnswerTap, EventQueue
from mamori.resolver.pipeline import Pipeline
from mamori.resolver.routing import ControlLink, Routes
from mamori.resolver.server import TcpListener
from mamori.resolver.upstream import UpstreamHealth, UpstreamPool, Upstreams

log = logging.getLogger("mamori.resolver.service")

DRAIN_GRACE = 3.0  # seconds in-flight queries get to finish at stop
HOUSEKEEPING_EVERY = 60.0


@dataclass(frozen=True)
class Snapshot:
    """A data plane's counters at one moment (summed over workers for /metrics).

    *stats*: the pipeline's counters (reply.Stats, all since start); cache
    figures are entries, bytes and evictions; *events_dropped* / *tap_dropped*:
    query events and passive DNS answers that did not fit their queues;
    *policy_version*: the version in force (0: none); *started*: UNIX time.
    """

    worker: int
    pid: int
    started: float
    policy_version: int
    stats: dict[str, int]
    cache_entries: int
    cache_bytes: int
    cache_evictions: int
    events_dropped: int
    tap_dropped: int
    upstreams: tuple[UpstreamHealth, ...]

    def to_wire(self) -> tuple[Any, ...]:
        """Plain values (marshal-able) for the worker channel."""
        ups = tuple(dataclasses.astuple(u) for u in self.upstreams)
        return (*dataclasses.astuple(self)[:-1], ups)

    @classmethod
    def from_wire(cls, t: tuple[Any, ...]) -> Snapshot:
        """The inverse of ``to_wire``; ValueError/TypeError when *t* is not one."""
        worker, pid, started, version, stats, entries, size, evictions, ev, tap, ups = t
        return cls(
            int(worker), int(pid), float(started), int(version), dict(stats), int(entries),
            int(size), int(evictions), int(ev), int(tap),
            tuple(UpstreamHealth(*u) for u in ups),
        )  # fmt: skip


class DataPlane:
    """Listeners -> pipeline on the running event loop.

    *socks*: the port-53 sockets (``bind_all``) followed by the encrypted ones
    (``bind_encrypted``: DoT, DoH, DoQ); *cfg* says how many of each.
    """

    def __init__(
        self,
        cfg: Config,
        socks: list[socket.socket],
        events: EventQueue,
        upstreams: Upstreams | None = None,
        tap: AnswerTap | None = None,
        control: ControlLink | None = None,
        worker: int = 0,
    ) -> None:
        self.cfg = cfg
        n_enc = encrypted_count(cfg)
        self.socks = socks[: len(socks) - n_enc]
        self.events = events
        self.tap = tap
        self.worker = worker
        self.started = time.time()
        self.pipeline = Pipeline(cfg, events, upstreams or UpstreamPool(cfg.upstream), tap, control)
        s = cfg.server
        self.tcp = TcpListener(
            self.pipeline, s.tcp_idle_timeout, s.tcp_max_connections, s.tcp_max_per_client,
            s.tcp_read_timeout,
        )  # fmt: skip
        self.encrypted = Encrypted(cfg, self.pipeline, socks[len(socks) - n_enc :])
        self.transports: list[BatchedUdp | asyncio.BaseTransport] = []
        self.servers: list[asyncio.AbstractServer] = []
        self._house: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.socks:
            if sock.type == socket.SOCK_DGRAM:
                p = self.pipeline
                self.transports.append(await serve_udp(sock, p, p.stats, limits=p))
            else:
                self.servers.append(await loop.create_server(self.tcp.factory, sock=sock))
        await self.encrypted.start()
        self._house = loop.create_task(self._housekeeping())

    # ----------------------------------------------------- control plane calls
    def set_policy(self, policy: Policy | None) -> None:
        """Swap in a policy version. What lived until now (cache, memos of the old version
        that are still referenced) moves out of the cyclic GC's way: a full collection
        walking it all would stall answers for tens of milliseconds."""
        self.pipeline.set_policy(policy)
        gc.freeze()

    def set_routes(self, routes: Routes) -> None:
        self.pipeline.set_routes(routes)

    def reconfigure(self, cfg: Config) -> None:
        """Apply a reloaded configuration (listen and workers need a restart)."""
        old = self.cfg
        if self.worker == 0:  # in the control process; with workers, the supervisor says it
            if cfg.server.listen != old.server.listen or cfg.server.tcp != old.server.tcp:
                log.warning("reload: listen/tcp changes take effect after a restart")
            if cfg.server.workers != old.server.workers:
                log.warning("reload: workers changes take effect after a restart")
        self.pipeline.configure(cfg)
        if cfg.upstream != old.upstream:
            previous = self.pipeline.resolve.upstreams
            self.pipeline.resolve.upstreams = UpstreamPool(cfg.upstream)
            previous.close()
        self.tcp.idle_timeout = cfg.server.tcp_idle_timeout
        self.tcp.max_connections = cfg.server.tcp_max_connections
        self.tcp.max_per_client = cfg.server.tcp_max_per_client
        self.tcp.read_timeout = cfg.server.tcp_read_timeout
        self.encrypted.reconfigure(cfg)
        self.events.limit = cfg.store.queue_size
        if self.tap is not None:
            self.tap.limit = cfg.pdns.queue_size
        self.cfg = cfg

    def snapshot(self) -> Snapshot:
        p = self.pipeline
        c = p.cache
        stats = p.stats.as_dict()
        stats["tcp_refused"] = self.tcp.refused_total + self.tcp.refused_per_client
        stats["tcp_read_timeouts"] = self.tcp.read_timeouts
        stats.update(self.encrypted.counters())
        return Snapshot(
            self.worker,
            os.getpid(),
            self.started,
            p.policy.version if p.policy is not None else 0,
            stats,
            len(c.data),
            c.bytes,
            c.evictions,
            self.events.dropped,
            self.tap.dropped if self.tap is not None else 0,
            tuple(p.resolve.upstreams.health()),
        )

    # ------------------------------------------------------------------- life
    async def _housekeeping(self) -> None:
        last_stats = time.monotonic()
        while True:
            interval = self.cfg.server.stats_interval
            await asyncio.sleep(min(HOUSEKEEPING_EVERY, interval or HOUSEKEEPING_EVERY))
            self.pipeline.cache.purge_stale(time.time())
            rrl = self.pipeline.rrl
            if rrl is not None:
                rrl.purge(time.monotonic())
            interval = self.cfg.server.stats_interval
            if interval and time.monotonic() - last_stats >= interval:
                last_stats = time.monotonic()
                self.log_stats()

    def log_stats(self) -> None:
        snap = self.snapshot()
        ups = ", ".join(
            f"{u.name} q={u.queries} err={u.errors} srtt={u.srtt * 1000:.1f}ms"
            for u in snap.upstreams
        )
        who = f"worker {self.worker} " if self.worker else ""
        log.info(
            "%sstats: %s cache_entries=%d cache_bytes=%d events_dropped=%d upstreams: %s",
            who,
            " ".join(f"{k}={v}" for k, v in snap.stats.items() if v or not k.startswith("rrl_")),
            snap.cache_entries,
            snap.cache_bytes,
            snap.events_dropped,
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
        self.encrypted.stop_accepting()
        pending = set(self.pipeline.tasks)
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_GRACE)
        for conn in list(self.tcp.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.encrypted.close()
        self.pipeline.close()
        self.log_stats()
