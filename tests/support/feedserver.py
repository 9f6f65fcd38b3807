"""Local HTTP servers standing in for feed hosts (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

from tests.support.net import free_port


class FeedServer:
    """Serves files from a directory with ETag / If-None-Match (304), like a feed host."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.requests: list[tuple[str, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = outer.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_response(404)
                    self.end_headers()
                    outer.requests.append((self.path, 404))
                    return
                body = path.read_bytes()
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.end_headers()
                    outer.requests.append((self.path, 304))
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                outer.requests.append((self.path, 200))

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


TAXII = "application/taxii+json;version=2.1"


class TaxiiServer:
    """A TAXII 2.1 collection (read-only) over HTTP with Basic auth.

    ``GET /api/collections/c1/`` (collection information) and ``.../objects/``
    with ``limit`` / ``next`` pagination and ``added_after``; objects get a
    ``date_added`` when put in. Requests are recorded with their query.
    """

    def __init__(self, user: str = "analyst", password: str = "s3cret") -> None:
        import base64
        import json
        import urllib.parse

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/collections/c1/"
        self.objects: list[tuple[str, dict[str, object]]] = []  # (date_added, object)
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.down = False
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code: int, doc: object) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", TAXII)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                outer.requests.append((url.path, query))
                if outer.down:
                    self._send(503, {"title": "down for maintenance"})
                    return
                if self.headers.get("Authorization") != auth:
                    self._send(401, {"title": "unauthorised"})
                    return
                if url.path == "/api/collections/c1/":
                    self._send(
                        200,
                        {
                            "id": "c1",
                            "title": "Phishing indicators",
                            "can_read": True,
                            "can_write": False,
                            "media_types": [TAXII],
                        },
                    )
                    return
                if url.path != "/api/collections/c1/objects/":
                    self._send(404, {"title": "not found"})
                    return
                after = query.get("added_after", [""])[0]
                items = [o for added, o in outer.objects if added > after]
                start = int(query.get("next", ["0"])[0])
                limit = int(query.get("limit", ["100"])[0]) or 100
                page = items[start : start + limit]
                more = start + limit < len(items)
                doc: dict[str, object] = {"more": more, "objects": page}
                if more:
                    doc["next"] = str(start + limit)
                self._send(200, doc)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, objects: list[dict[str, object]], added: str) -> None:
        self.objects.extend((added, o) for o in objects)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
