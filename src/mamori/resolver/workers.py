"""``workers > 1``: SO_REUSEPORT worker processes, each with its own DNS loop; the
parent writes the query log their events are forwarded to, and forwards signals."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from typing import Any

from mamori.config import Config
from mamori.policy.engine import Policy
from mamori.resolver.events import EventForwarder, EventQueue, EventWriter, mp_source
from mamori.resolver.server import bind_all
from mamori.resolver.service import DRAIN_GRACE, _announce, _reload_config, serve_loop
from mamori.store.base import QueryLogStore

log = logging.getLogger("mamori.resolver.service")


def _worker_main(cfg: Config, socks: list[socket.socket], mpq: Any, policy: Policy | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards what matters
    events = EventQueue(cfg.store.queue_size)
    fwd = EventForwarder(events, mpq, cfg.store.flush_interval)
    fwd.start()
    try:
        serve_loop(cfg, socks, events, lambda: None, policy, update_feeds=False)
    finally:
        fwd.stop()


def run_workers(cfg: Config, store: QueryLogStore, policy: Policy | None) -> None:
    n = cfg.server.workers
    if cfg.dnsbl:
        log.warning("workers = %d: [[dnsbl]] zones are served only with workers = 1", n)
    if cfg.feeds:
        log.warning(
            "workers = %d: [[feed]] zones are not refreshed automatically; run"
            " `mamori feeds update --config FILE` (e.g. from cron): the workers reload them",
            n,
        )
    if any(z.primary or z.publish for z in cfg.rpz):
        log.warning(
            "workers = %d: each worker transfers and publishes zones on its own (N transfers,"
            " N NOTIFYs); for zone transfer, prefer workers = 1 or `mamori zones serve`",
            n,
        )
    sets = [bind_all(cfg.server.listen, cfg.server.tcp, reuse_port=True) for _ in range(n)]
    ctx = multiprocessing.get_context("fork")
    mpq = ctx.Queue(maxsize=256)
    procs = []
    for socks in sets:
        p = ctx.Process(target=_worker_main, args=(cfg, socks, mpq, policy), daemon=False)
        p.start()
        procs.append(p)
    for socks in sets:
        for s in socks:
            s.close()  # the children hold their own copies
    writer = EventWriter(mp_source(mpq), store, cfg.store.flush_interval, cfg.store.query_log_days)
    writer.start()
    _announce(cfg, n)
    stop = threading.Event()

    def forward(signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            if _reload_config(str(cfg.path)) is None:
                return  # keep workers on the running config; the error is logged
        else:
            stop.set()
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signum if signum != signal.SIGINT else signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while not stop.is_set() and any(p.is_alive() for p in procs):
        stop.wait(0.5)
    for p in procs:
        p.join(DRAIN_GRACE + 5)
        if p.is_alive():
            p.kill()
    writer.stop()
