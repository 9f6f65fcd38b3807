"""Real alert receivers on 127.0.0.1: an HTTP webhook, syslog (UDP and TCP), SMTP (aiosmtpd)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any

from tests.support.net import free_port


class Webhook:
    def __init__(self, delay: float = 0.0) -> None:
        """*delay*: seconds each POST is kept waiting for its answer (after it was recorded),
        like a slow receiver."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                outer.received.append(json.loads(self.rfile.read(n)))
                if delay:
                    time.sleep(delay)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Syslog:
    """UDP datagrams and TCP octet-counted frames, as received."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[str, bytes]] = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(5)
        self.tcp.settimeout(0.2)
        self._stop = threading.Event()
        threading.Thread(target=self._udp_loop, daemon=True).start()
        threading.Thread(target=self._tcp_loop, daemon=True).start()

    def _udp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.udp.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            self.messages.append(("udp", data))

    def _tcp_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                buf = b""
                try:
                    while chunk := conn.recv(65535):
                        buf += chunk
                except OSError:
                    pass
            while buf:  # octet counting: "LEN SP MSG"
                n, _, rest = buf.partition(b" ")
                size = int(n)
                self.messages.append(("tcp", rest[:size]))
                buf = rest[size:]

    def close(self) -> None:
        self._stop.set()
        self.udp.close()
        self.tcp.close()


class Smtp:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.messages: list[tuple[str, list[str], bytes]] = []
        outer = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
                outer.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
