"""A plain-HTTP forward proxy that resolves every host name through a DNS server.

A browser in a test cannot be pointed at our resolver (it uses the system's), but it
can use a proxy: this one asks *dns_port* on 127.0.0.1 for each request's host (A,
no cache) and connects to the address it is given, as a device on a network that
uses mamori would. Only ``http://`` requests (GET, HEAD, POST); an unresolvable
name is answered 502.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import dns.message
import dns.query
import dns.rdatatype

from tests.support.net import free_port

HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade"}


def resolve(name: str, dns_port: int) -> str | None:
    """The first A address *name* has through the DNS server on 127.0.0.1:*dns_port*."""
    r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=dns_port, timeout=3)
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return str(next(iter(rrset)))
    return None


@contextmanager
def dns_proxy(dns_port: int) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Serve the proxy on 127.0.0.1; (its port, the (host, address) looked up)."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _relay(self) -> None:
            url = urlsplit(self.path)
            host, port = url.hostname or "", url.port or 80
            addr = resolve(host, dns_port)
            seen.append((host, addr or ""))
            if addr is None:
                self.send_error(502, f"{host} does not resolve")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn = http.client.HTTPConnection(addr, port, timeout=5)
            try:
                path = url.path + (f"?{url.query}" if url.query else "")
                conn.request(self.command, path or "/", body, headers)
                r = conn.getresponse()
                data = r.read()
            finally:
                conn.close()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = _relay  # noqa: N815 (http.server's names)

        def log_message(self, *_args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
