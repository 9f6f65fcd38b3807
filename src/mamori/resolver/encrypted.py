"""The encrypted DNS listeners of one data plane: DoT, DoH and DoQ on ``[server] dot,
doh, doq`` with the ``[tls]`` certificate, feeding the same pipeline as port 53.

``bind_encrypted`` binds their sockets (each worker its own, SO_REUSEPORT, like the
port-53 ones); ``Encrypted`` serves them, applies reloaded bounds, reloads the
certificate on SIGHUP (``reconfigure``) and when its files change (checked every
CERT_CHECK_EVERY seconds), and reports counters under ``dot_*``, ``doh_*``, ``doq_*``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import TYPE_CHECKING, Any

from mamori.config import Config
from mamori.errors import StartupError
from mamori.resolver.doh import DohConnection
from mamori.resolver.doq import DoqListener, DoqServer, quic_configuration
from mamori.resolver.dot import DnsListener, DotConnection
from mamori.resolver.server import bind_socket
from mamori.resolver.tls import CertStore, TlsError

if TYPE_CHECKING:
    from mamori.resolver.pipeline import Pipeline

log = logging.getLogger(__name__)

CERT_CHECK_EVERY = 5.0  # seconds between looks at the certificate files


def encrypted_count(cfg: Config) -> int:
    """How many sockets ``bind_encrypted`` binds for *cfg*."""
    s = cfg.server
    return len(s.dot) + len(s.doh) + len(s.doq)


def bind_encrypted(cfg: Config, reuse_port: bool) -> list[socket.socket]:
    """Bind DoT (TCP), DoH (TCP), DoQ (UDP) listeners, in that order; all or nothing.
    Raises StartupError naming the address when one is taken."""
    s = cfg.server
    plan = [(e, socket.SOCK_STREAM) for e in (*s.dot, *s.doh)]
    plan += [(e, socket.SOCK_DGRAM) for e in s.doq]
    socks: list[socket.socket] = []
    try:
        for ep, kind in plan:
            socks.append(bind_socket(ep, kind, reuse_port))
    except StartupError:
        for sock in socks:
            sock.close()
        raise
    return socks


def load_certs(cfg: Config) -> CertStore | None:
    """The ``[tls]`` certificate when an encrypted listener is configured (else None);
    raises StartupError when it does not load."""
    if not encrypted_count(cfg):
        return None
    assert cfg.tls.cert is not None and cfg.tls.key is not None  # the loader checks it
    try:
        return CertStore(cfg.tls.cert, cfg.tls.key)
    except TlsError as e:
        raise StartupError(str(e)) from e


class Encrypted:
    """DoT, DoH and DoQ listeners on *socks* (from ``bind_encrypted``) for *pipeline*."""

    def __init__(self, cfg: Config, pipeline: Pipeline, socks: list[socket.socket]) -> None:
        self.cfg = cfg
        try:
            certs = load_certs(cfg)
        except StartupError as e:  # a worker restarted after a bad renewal: port 53 serves
            log.error("encrypted DNS not served by this worker: %s", e)
            for sock in socks:
                sock.close()
            certs, socks = None, []
        self.certs = certs
        self.socks = socks
        name = cfg.tls.server_name
        t = cfg.tls
        limits = (t.handshake_timeout, t.idle_timeout, t.read_timeout, t.max_connections,
                  t.max_per_client)  # fmt: skip
        self.dot = DnsListener(pipeline, name, "dot", certs, ("dot",), *limits)
        self.doh = DnsListener(pipeline, name, "doh", certs, ("h2", "http/1.1"), *limits)
        self.doq = DoqListener(pipeline, name, "doq", certs, ("doq",), *limits)
        self.servers: list[asyncio.AbstractServer] = []
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.socks:
            return
        loop = asyncio.get_running_loop()
        s = self.cfg.server
        n_dot, n_doh = len(s.dot), len(s.doh)
        dot, doh, doq = self.dot, self.doh, self.doq
        for i, sock in enumerate(self.socks):
            if i < n_dot:
                srv = await loop.create_server(partial(DotConnection, dot), sock=sock)
                self.servers.append(srv)
            elif i < n_dot + n_doh:
                srv = await loop.create_server(partial(DohConnection, doh), sock=sock)
                self.servers.append(srv)
            else:
                factory = partial(DoqServer, doq, self._quic_config())
                _, proto = await loop.create_datagram_endpoint(factory, sock=sock)
                doq.servers.append(proto)
        self._watch = loop.create_task(self._watch_certs())

    def _quic_config(self) -> Any:
        assert self.certs is not None
        doq = self.doq
        if doq.quic_config is None or doq.quic_generation != self.certs.generation:
            t = self.cfg.tls
            doq.quic_config = quic_configuration(str(t.cert), str(t.key), t.idle_timeout)
            doq.quic_generation = self.certs.generation
        return doq.quic_config

    def _certs_changed(self) -> None:
        if not self.doq.servers:
            return
        try:
            config = self._quic_config()
        except (OSError, ValueError) as e:
            log.error("doq: new certificate not loaded, the old one keeps serving: %s", e)
            return
        for srv in self.doq.servers:
            srv.set_configuration(config)

    async def _watch_certs(self) -> None:
        while True:
            await asyncio.sleep(CERT_CHECK_EVERY)
            if self.certs is not None and self.certs.check():
                self._certs_changed()

    def reconfigure(self, cfg: Config) -> None:
        """A reloaded configuration: new bounds, the certificate loaded again (SIGHUP)."""
        if (cfg.server.dot, cfg.server.doh, cfg.server.doq) != (
            self.cfg.server.dot,
            self.cfg.server.doh,
            self.cfg.server.doq,
        ) or (cfg.tls.cert, cfg.tls.key) != (self.cfg.tls.cert, self.cfg.tls.key):
            log.warning("reload: dot/doh/doq addresses and [tls] files take effect after a restart")
        self.cfg = cfg
        t = cfg.tls
        for lis in (self.dot, self.doh, self.doq):
            lis.configure(t.handshake_timeout, t.idle_timeout, t.read_timeout,
                          t.max_connections, t.max_per_client)  # fmt: skip
            lis.server_name = t.server_name
        if self.certs is not None and self.certs.reload():
            self._certs_changed()

    def counters(self) -> dict[str, int]:
        if not self.socks:
            return {}
        out: dict[str, int] = {}
        for lis in (self.dot, self.doh, self.doq):
            out.update(lis.counters())
        out["doq_open"] = sum(len(srv.open) for srv in self.doq.servers)
        if self.certs is not None:
            out["tls_reload_failures"] = self.certs.reload_failures
        return out

    def stop_accepting(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for srv in self.servers:
            srv.close()

    def close(self) -> None:
        """Close every open connection (after the in-flight queries drained)."""
        self.dot.close_all()
        self.doh.close_all()
        self.doq.close_all()
