"""Alerts carry a client's address as ``[store] client_addresses`` says; a rule still
counts hits per real client (in memory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamori import config
from mamori.alerts.engine import AlertEngine
from mamori.alerts.sinks import Alert, cef_line
from tests.support.receivers import Webhook


@pytest.mark.parametrize(("mode", "shown"), [("truncate", "192.0.2.0"), ("none", "-")])
def test_alert_subject_message_details(tmp_path: Path, mode: str, shown: str) -> None:
    hook = Webhook()
    try:
        (tmp_path / "m.toml").write_text(
            '[upstream]\nservers = ["127.0.0.1:53"]\n'
            f'[store]\npath = "{tmp_path / "m.db"}"\nclient_addresses = "{mode}"\n'
            '[[alert]]\nname = "burst"\nwhen = "hit"\ncount = 2\nwithin = 60\nthrottle = 0\n'
            f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        )
        engine = AlertEngine(config.load(tmp_path / "m.toml"))
        engine.db = None
        hit = ("x.example.", "z.rpz.", "QNAME", "NXDOMAIN", "blocked")
        engine._hit((1000.0, "192.0.2.7", *hit))
        engine._hit((1001.0, "192.0.2.8", *hit))  # another client: not 2 hits of one
        assert hook.received == []
        engine._hit((1002.0, "192.0.2.7", *hit))
        assert len(hook.received) == 1
        a = hook.received[0]
        assert a["subject"] == shown and a["details"]["client"] == shown
        assert a["message"].startswith(f"client {shown} asked for x.example")
        assert "192.0.2.7" not in repr(a)
    finally:
        hook.close()


def test_cef_has_no_src_without_an_address() -> None:
    alert = Alert("r", "warning", "-", "client - asked", 1000.0, {"client": "-", "name": "x"})
    assert " src=" not in cef_line(alert) and "dhost=x" in cef_line(alert)
    alert = Alert("r", "warning", "192.0.2.0", "m", 1000.0, {"client": "192.0.2.0"})
    assert "src=192.0.2.0" in cef_line(alert)
