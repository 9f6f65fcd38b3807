"""A small authoritative DNS server for tests: real UDP/TCP sockets on 127.0.0.1.

Serves one zone from master-file text with dnspython, and has knobs tests
turn to make it misbehave: truncate UDP answers (TC=1), stop answering,
answer SERVFAIL. Counts the queries it receives per transport.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.zone

from tests.support.net import free_port


class AuthServer:
    def __init__(self, zone_text: str, origin: str, host: str = "127.0.0.1") -> None:
        self.zone = dns.zone.from_text(zone_text, origin=origin, relativize=False)
        self.origin = dns.name.from_text(origin)
        self.host = host
        self.port = free_port(host)
        self.mode = "answer"  # answer | drop | servfail | refused
        self.delay = 0.0  # seconds to wait before answering
        self.tc_names: set[str] = set()
        self.queries: Counter[str] = Counter()
        self.log: list[tuple[str, str, int]] = []
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- answers
    def answer(self, wire: bytes, transport: str) -> bytes | None:
        q = dns.message.from_wire(wire)
        qname = q.question[0].name
        qtype = q.question[0].rdtype
        self.queries[transport] += 1
        self.log.append((transport, qname.to_text().lower(), qtype))
        if self.mode == "drop":
            return None
        if self.delay:
            time.sleep(self.delay)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        if self.mode in ("servfail", "refused"):
            r.set_rcode(dns.rcode.SERVFAIL if self.mode == "servfail" else dns.rcode.REFUSED)
            return r.to_wire()
        if transport == "udp" and qname.to_text().lower() in self.tc_names:
            r.flags |= dns.flags.TC
            return r.to_wire()
        self._fill(r, qname, qtype)
        return r.to_wire(max_size=65535)

    def _fill(self, r: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        if not qname.is_subdomain(self.origin):
            r.set_rcode(dns.rcode.REFUSED)
            r.flags &= ~dns.flags.AA
            return
        name = qname
        for _ in range(8):  # follow CNAMEs inside the zone
            node = self.zone.get_node(name)
            if node is None:
                exists = any(n.is_subdomain(name) for n in self.zone.nodes)
                if not exists:
                    r.set_rcode(dns.rcode.NXDOMAIN)
                self._soa(r)
                return
            rds = node.get_rdataset(dns.rdataclass.IN, qtype)
            if rds is not None:
                r.answer.append(self._rrset(name, rds))
                return
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is not None and qtype != dns.rdatatype.CNAME:
                r.answer.append(self._rrset(name, cname))
                name = cname[0].target
                if not name.is_subdomain(self.origin):
                    return
                continue
            self._soa(r)
            return

    def _soa(self, r: dns.message.Message) -> None:
        soa = self.zone.get_rdataset(self.origin, dns.rdatatype.SOA)
        assert soa is not None
        r.authority.append(self._rrset(self.origin, soa))

    @staticmethod
    def _rrset(name: dns.name.Name, rds: dns.rdataset.Rdataset) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(name, rds.rdclass, rds.rdtype)
        rrset.update(rds)
        return rrset

    # ---------------------------------------------------------------- sockets
    def start(self) -> AuthServer:
        outer = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                resp = outer.answer(data, "udp")
                if resp is not None:
                    if len(resp) > 512 and not _has_edns(data):
                        resp = _tc_only(data)
                    sock.sendto(resp, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn = self.request
                conn.settimeout(5)
                try:
                    while True:
                        hdr = _recv(conn, 2)
                        if not hdr:
                            return
                        data = _recv(conn, struct.unpack("!H", hdr)[0])
                        resp = outer.answer(data, "tcp")
                        if resp is None:
                            return
                        conn.sendall(struct.pack("!H", len(resp)) + resp)
                except OSError:
                    return

        socketserver.ThreadingUDPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        udp = socketserver.ThreadingUDPServer((self.host, self.port), Udp)
        tcp = socketserver.ThreadingTCPServer((self.host, self.port), Tcp)
        for srv in (udp, tcp):
            srv.daemon_threads = True
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
            t.daemon = True
            t.start()
            self._servers.append(srv)
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _recv(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf


def _has_edns(data: bytes) -> bool:
    return dns.message.from_wire(data).edns >= 0


def _tc_only(data: bytes) -> bytes:
    q = dns.message.from_wire(data)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.TC
    return r.to_wire()
