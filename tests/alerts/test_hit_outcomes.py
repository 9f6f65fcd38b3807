"""Hit rules alert on blocks: an allow (PASSTHRU) or a "disabled" zone's match alerts only
when a rule asks for that action."""

from __future__ import annotations

from pathlib import Path

from mamori import config
from mamori.alerts.engine import AlertEngine
from tests.support.receivers import Webhook


def test_only_blocks_alert_unless_a_rule_names_the_action(tmp_path: Path) -> None:
    hook = Webhook()
    try:
        (tmp_path / "m.toml").write_text(
            '[upstream]\nservers = ["127.0.0.1:53"]\n'
            f'[store]\npath = "{tmp_path / "m.db"}"\n'
            '[[alert]]\nname = "any"\nwhen = "hit"\nthrottle = 0\n'
            '[[alert]]\nname = "allows"\nwhen = "hit"\naction = ["PASSTHRU"]\nthrottle = 0\n'
            f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        )
        engine = AlertEngine(config.load(tmp_path / "m.toml"))
        engine.db = None  # no history file needed here
        base = (1000.0, "192.0.2.7", "x.example.", "z.rpz.", "QNAME")
        engine._hit((*base, "NXDOMAIN", "blocked"))
        engine._hit((*base, "DROP", "dropped"))
        engine._hit((*base, "PASSTHRU", "resolved"))
        engine._hit((*base, "disabled", "log_only"))
        got = [(a["alert"], a["details"]["action"]) for a in hook.received]
        assert got == [("any", "NXDOMAIN"), ("any", "DROP"), ("allows", "PASSTHRU")]
    finally:
        hook.close()
