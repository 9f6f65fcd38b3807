"""State rules: a stale feed, an upstream down, a failing transfer; throttling per subject."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from mamori import config
from mamori.alerts.engine import AlertEngine
from mamori.feeds.sources import update
from tests.support.receivers import Webhook


def test_state_rules_fire_once_per_subject_and_throttle(tmp_path: Path) -> None:
    hook = Webhook()
    try:
        (tmp_path / "a.txt").write_text("bad.example\n")
        (tmp_path / "m.toml").write_text(
            '[upstream]\nservers = ["127.0.0.1:53"]\n'
            f'[store]\npath = "{tmp_path / "m.db"}"\n'
            f'[[feed]]\nname = "a"\npath = "{tmp_path / "a.txt"}"\nformat = "domains"\n'
            f'[[feed]]\nname = "b"\npath = "{tmp_path / "b.txt"}"\nformat = "domains"\n'
            '[[alert]]\nname = "stale"\nwhen = "feed_stale"\nmax_age = 3600\n'
            '[[alert]]\nname = "down"\nwhen = "upstream_down"\nthrottle = 600\n'
            '[[alert]]\nname = "xfr"\nwhen = "transfer_failed"\n'
            f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        )
        cfg = config.load(tmp_path / "m.toml")
        now = time.time()
        update(cfg.feeds[0], cfg.store, now=int(now - 7200))  # a: 2 h old; b: never
        ups = [SimpleNamespace(name="127.0.0.1:53", errors=7, is_up=lambda t: False)]
        zone = SimpleNamespace(status=SimpleNamespace(expired=False, last_result="failed: timeout"))
        runtime = SimpleNamespace(
            svc=SimpleNamespace(pipeline=SimpleNamespace(pool=SimpleNamespace(upstreams=ups))),
            subs=SimpleNamespace(subs={"rpz.example.": zone}),
        )
        engine = AlertEngine(cfg, runtime)
        engine._born = now - 7200  # running for 2 h
        engine.check_state(now)
        got = sorted((a["alert"], a["subject"]) for a in hook.received)
        assert got == [
            ("down", "127.0.0.1:53"), ("stale", "a"), ("stale", "b"), ("xfr", "rpz.example."),
        ]  # fmt: skip
        assert "last good update 2.0 h ago" in next(
            a["message"] for a in hook.received if a["subject"] == "a"
        )
        engine.check_state(now + 60)  # throttled (default 1 h, down: 10 min)
        assert len(hook.received) == 4
        engine.check_state(now + 601)  # the upstream is still down after 10 min
        assert len(hook.received) == 5 and hook.received[-1]["alert"] == "down"
    finally:
        hook.close()
