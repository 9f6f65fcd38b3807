"""A taken HTTP port is a clear startup error, before the DNS side serves."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.net import free_port

pytestmark = pytest.mark.integration


def test_taken_http_port_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    conf = tmp_path / "m.toml"
    conf.write_text(
        f'[server]\nlisten = ["127.0.0.1:{free_port()}"]\n[upstream]\nservers = ["127.0.0.1:9"]\n'
        f'[store]\npath = "{tmp_path / "m.db"}"\n[web]\nenabled = true\n'
        f'listen = "127.0.0.1:{port}"\n'
    )
    try:
        r = subprocess.run(
            [sys.executable, "-m", "mamori", "serve", "--config", str(conf)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        held.close()
    assert r.returncode == 2, r.stderr
    assert f"mamori: error: HTTP listener 127.0.0.1:{port}: Address already in use" in r.stderr


def test_serve_logs_where_the_console_is(tmp_path: Path) -> None:
    from tests.support.mamori_proc import MamoriProcess
    from tests.support.wait import until

    port = free_port()
    extra = f'[web]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
    m = MamoriProcess(tmp_path, [f"127.0.0.1:{free_port()}"], extra=extra).start()
    try:
        assert until(lambda: f"console: http://127.0.0.1:{port}/" in m.stderr()), m.stderr()
    finally:
        assert m.stop() == 0, m.stderr()
    (tmp_path / "no-web").mkdir()
    no_web = MamoriProcess(tmp_path / "no-web", [f"127.0.0.1:{free_port()}"]).start()
    assert no_web.stop() == 0
    assert "console: http" not in no_web.stderr()  # [web] off: no console to point at
