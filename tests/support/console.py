"""The web app (console + APIs) served by uvicorn on 127.0.0.1 in a thread, and a logged-in
HTTP client for it (urllib with a cookie jar): console tests without a DNS service."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from mamori import config as cfgmod
from mamori.web.app import create_app, keys_path
from mamori.web.keys import KeyStore
from mamori.web.server import EmbeddedServer
from tests.support.net import free_port

PASSWORD = "correct horse battery staple"


class FakeRuntime:
    """What the console reads of a running service: the config in force, no policy."""

    def __init__(self, cfg: cfgmod.Config | None = None) -> None:
        self.current = cfg
        self.policy = None
        self.subs = None

    @property
    def config(self) -> cfgmod.Config | None:
        return self.current

    def snapshots(self) -> list[Any]:
        return []

    def zones(self) -> list[Any]:
        return []


def write_config(tmp: Path, extra: str = "") -> cfgmod.Config:
    path = tmp / "m.toml"
    path.write_text(
        f'[upstream]\nservers = ["127.0.0.1:9"]\n[store]\npath = "{tmp / "m.db"}"\n{extra}'
    )
    return cfgmod.load(path)


class ConsoleServer:
    def __init__(self, cfg: cfgmod.Config, runtime: Any = None) -> None:
        keys = KeyStore(keys_path(cfg))
        try:
            if "admin" not in keys.users():
                keys.add_user("admin", PASSWORD)
        finally:
            keys.close()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(cfg, runtime), host="127.0.0.1", port=self.port, log_level="warning",
            access_log=False, lifespan="off", loop="none",
        )  # fmt: skip
        self.server = EmbeddedServer(config)
        self.server.embedded = True
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))

    def __enter__(self) -> ConsoleServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("console did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Client:
    """An HTTP client of the console (cookies kept); ``login()`` as admin."""

    def __init__(self, base: str, accept_language: str = "en") -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.accept_language = accept_language

    def request(
        self, path: str, data: bytes | None = None, headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        req = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Accept-Language": self.accept_language, **(headers or {})},
        )  # fmt: skip
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, path: str) -> tuple[int, str]:
        status, _h, body = self.request(path)
        return status, body.decode()

    def json(self, path: str) -> tuple[int, Any]:
        status, _h, body = self.request(path, headers={"Accept": "application/json"})
        return status, json.loads(body)

    def login(self) -> None:
        _s, page = self.get("/login")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf, page
        form = urllib.parse.urlencode(
            {"csrf": csrf.group(1), "user": "admin", "password": PASSWORD, "next": "/"}
        ).encode()
        status, page = self._post("/login", form)
        assert status == 200 and "/logout" in page, (status, page)

    def _post(self, path: str, form: bytes) -> tuple[int, str]:
        status, _h, body = self.request(
            path, form, {"Content-Type": "application/x-www-form-urlencoded"}
        )
        return status, body.decode()
