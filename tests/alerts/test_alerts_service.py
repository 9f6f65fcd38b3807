"""Alerts from a running mamori to real receivers: a webhook, syslog (UDP with CEF, TCP), SMTP."""

from __future__ import annotations

import email
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.receivers import Smtp, Syslog, Webhook
from tests.support.wait import until

pytestmark = pytest.mark.integration


@pytest.fixture
def receivers() -> Iterator[tuple[Webhook, Syslog, Smtp]]:
    hook, syslog, smtp = Webhook(), Syslog(), Smtp()
    yield hook, syslog, smtp
    hook.close()
    syslog.close()
    smtp.close()


def test_botnet_contact_reaches_every_sink_once(
    tmp_path: Path, receivers: tuple[Webhook, Syslog, Smtp]
) -> None:
    hook, syslog, smtp = receivers
    (tmp_path / "cc.txt").write_text("mail.example.test\n")
    (tmp_path / "local.rpz").write_text(
        "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n@ NS localhost.\n"
        "www.example.test CNAME .\n"
    )
    extra = (
        "[policy]\nwatch_interval = 0.2\n"
        f'[[rpz]]\nname = "local.rpz"\nfile = "{tmp_path / "local.rpz"}"\n'
        f'[[feed]]\nname = "cc"\npath = "{tmp_path / "cc.txt"}"\nformat = "domains"\n'
        'category = "botnet-cc"\n'
        '[[alert]]\nname = "infected"\nwhen = "hit"\ncategory = ["botnet-cc"]\n'
        'severity = "critical"\nthrottle = 3600\n'
        '[[alert]]\nname = "ads-burst"\nwhen = "hit"\nzone = ["local.rpz"]\ncount = 3\n'
        'within = 60\nsinks = ["hook"]\n'
        f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        f'[[alert_sink]]\nname = "siem"\ntype = "syslog"\naddress = "127.0.0.1:{syslog.port}"\n'
        'format = "cef"\n'
        f'[[alert_sink]]\nname = "syslog-tcp"\ntype = "syslog"\n'
        f'address = "127.0.0.1:{syslog.port}"\nprotocol = "tcp"\n'
        f'[[alert_sink]]\nname = "mail"\ntype = "email"\nsmtp = "127.0.0.1:{smtp.port}"\n'
        'sender = "mamori@example.test"\nto = ["soc@example.test"]\n'
    )
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{up.port}"], extra=extra).start()
        try:
            assert until(lambda: m.query("mail.example.test").rcode() == 3, 20)  # the feed applies
            for _ in range(3):
                assert m.query("mail.example.test").rcode() == 3  # throttled: no more alerts
            for _ in range(2):
                assert m.query("www.example.test").rcode() == 3
            assert until(lambda: len(smtp.messages) >= 1 and len(syslog.messages) >= 2, 15)
            assert until(lambda: any(a["alert"] == "infected" for a in hook.received), 5)
            assert not any(a["alert"] == "ads-burst" for a in hook.received)  # 2 of 3 hits
            assert m.query("www.example.test").rcode() == 3  # the third within a minute
            assert until(lambda: any(a["alert"] == "ads-burst" for a in hook.received), 15)
        finally:
            assert m.stop() == 0, m.stderr()
    infected = [a for a in hook.received if a["alert"] == "infected"]
    assert len(infected) == 1  # 4+ hits, one alert per client per hour
    a = infected[0]
    assert a["severity"] == "critical" and a["subject"] == "127.0.0.1"
    assert a["details"]["name"] == "mail.example.test" and a["details"]["category"] == "botnet-cc"
    by_proto = {p: data for p, data in syslog.messages}
    udp, tcp = by_proto["udp"], by_proto["tcp"]
    assert udp.startswith(b"<130>1 ") and b"CEF:0|mamori|mamori|" in udp  # local0.crit
    assert b"src=127.0.0.1" in udp and b"dhost=mail.example.test" in udp
    assert tcp.startswith(b"<130>1 ") and b'[mamori@32473 rule="infected"' in tcp
    (sender, rcpts, content) = smtp.messages[0]
    msg = email.message_from_bytes(content)
    assert sender == "mamori@example.test" and rcpts == ["soc@example.test"]
    assert msg["Subject"].startswith(
        "[mamori] critical: client 127.0.0.1 asked for mail.example.test"
    )
    assert len(syslog.messages) == 2 and len(smtp.messages) == 1  # ads-burst: webhook only
    import sqlite3

    db = sqlite3.connect(tmp_path / "alerts.sqlite")
    rows = db.execute("SELECT rule, delivered FROM alerts ORDER BY time").fetchall()
    db.close()
    assert rows == [("infected", "hook,siem,syslog-tcp,mail"), ("ads-burst", "hook")]


def test_an_alert_rule_added_by_sighup_fires_without_a_restart(tmp_path: Path) -> None:
    """A ``[[alert]]`` and its sink added to the config of a running mamori (which had
    none) apply at the SIGHUP, as every other rule does."""
    import os
    import signal

    (tmp_path / "local.rpz").write_text(
        "$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n@ NS localhost.\n"
        "www.example.test CNAME .\n"
    )
    hook = Webhook()
    extra = f'[[rpz]]\nname = "local.rpz"\nfile = "{tmp_path / "local.rpz"}"\n'
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{up.port}"], extra=extra).start()
        try:
            assert m.query("www.example.test").rcode() == 3
            with m.config.open("a") as f:
                f.write(
                    '[[alert]]\nname = "blocked"\nwhen = "hit"\nsinks = ["hook"]\nthrottle = 0\n'
                    f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
                )
            assert m.proc is not None
            os.kill(m.proc.pid, signal.SIGHUP)
            assert until(lambda: "configuration reloaded" in m.stderr(), 20), m.stderr()
            assert m.query("www.example.test").rcode() == 3
            assert until(lambda: any(a["alert"] == "blocked" for a in hook.received), 15)
        finally:
            assert m.stop() == 0, m.stderr()
            hook.close()
