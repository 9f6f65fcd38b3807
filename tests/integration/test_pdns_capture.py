"""Live capture on the loopback interface (root): DNS answers seen on the wire reach the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.wait import until

pytestmark = pytest.mark.integration


def test_live_capture_on_loopback(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: live capture must be tested")
        pytest.skip("live capture needs root (CAP_NET_RAW)")
    conf = tmp_path / "m.toml"
    with AuthServer(ZONE, "example.test.") as auth:
        conf.write_text(
            '[upstream]\nservers = ["127.0.0.1:53"]\n'
            f'[store]\npath = "{tmp_path / "m.db"}"\n'
            f'[pdns]\ncapture = "lo"\ncapture_port = {auth.port}\nflush_interval = 0.2\n'
        )
        err = (tmp_path / "capture.stderr").open("wb")
        cap = subprocess.Popen(
            [sys.executable, "-m", "mamori", "pdns", "capture", "--config", str(conf)], stderr=err
        )
        try:
            time.sleep(1.0)  # the socket is open and filtering before the first query

            def ask_and_find() -> bool:
                q = dns.message.make_query("mail.example.test", "MX")
                assert dns.query.udp(q, "127.0.0.1", port=auth.port, timeout=2).answer
                q = dns.message.make_query("www.example.test", "A")
                assert dns.query.tcp(q, "127.0.0.1", port=auth.port, timeout=2).answer
                r = subprocess.run(
                    [sys.executable, "-m", "mamori", "pdns", "query", "--config", str(conf),
                     "-r", "*.example.test", "-j"],
                    capture_output=True, text=True,
                )  # fmt: skip
                got = {(d["rrname"], d["rrtype"]) for d in map(json.loads, r.stdout.splitlines())}
                return {("mail.example.test.", "MX"), ("www.example.test.", "A")} <= got

            assert until(ask_and_find, 20), (tmp_path / "capture.stderr").read_text()
        finally:
            cap.send_signal(signal.SIGTERM)
            assert cap.wait(15) == 0, (tmp_path / "capture.stderr").read_text()
            err.close()
    stderr = (tmp_path / "capture.stderr").read_text()
    assert "0 malformed" in stderr, stderr
