"""State rules: a stale feed, an upstream down, a failing transfer, a worker that keeps
dying; throttling per subject."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from mamori import config
from mamori.alerts.engine import AlertEngine
from mamori.control.view import Runtime, WorkerInfo
from mamori.feeds.sources import update
from mamori.resolver.dataplane import Snapshot
from mamori.resolver.upstream import LATENCY_BUCKETS, UpstreamHealth
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
            '[[alert]]\nname = "crash"\nwhen = "worker_restarts"\n'
            f'[[alert_sink]]\nname = "hook"\ntype = "webhook"\nurl = "{hook.url}"\n'
        )
        cfg = config.load(tmp_path / "m.toml")
        now = time.time()
        update(cfg.feeds[0], cfg.store, now=int(now - 7200))  # a: 2 h old; b: never
        down = UpstreamHealth(
            "127.0.0.1:53", False, 0.0, 9, 7, 0, (0,) * (len(LATENCY_BUCKETS) + 1), 0.0
        )
        snap = Snapshot(1, 100, now, 1, {}, 0, 0, 0, 0, 0, (down,))
        zone = SimpleNamespace(status=SimpleNamespace(expired=False, last_result="failed: timeout"))
        runtime = Runtime()
        runtime.snapshot_source = lambda: [snap]
        runtime.subs = SimpleNamespace(subs={"rpz.example.": zone})  # type: ignore[assignment]
        runtime.worker_source = lambda: [
            WorkerInfo(1, 101, "running", 0, now, 0.0, "", 1),
            WorkerInfo(2, 102, "backoff", 5, now, 4.0, "killed by SIGSEGV", 1),
        ]
        engine = AlertEngine(cfg, runtime)
        engine._born = now - 7200  # running for 2 h
        engine.check_state(now)
        got = sorted((a["alert"], a["subject"]) for a in hook.received)
        assert got == [
            ("crash", "worker 2"), ("down", "127.0.0.1:53"), ("stale", "a"), ("stale", "b"),
            ("xfr", "rpz.example."),
        ]  # fmt: skip
        assert "killed by SIGSEGV" in next(
            a["message"] for a in hook.received if a["alert"] == "crash"
        )
        assert "last good update 2.0 h ago" in next(
            a["message"] for a in hook.received if a["subject"] == "a"
        )
        engine.check_state(now + 60)  # throttled (default 1 h, down: 10 min)
        assert len(hook.received) == 5
        engine.check_state(now + 601)  # the upstream is still down after 10 min
        assert len(hook.received) == 6 and hook.received[-1]["alert"] == "down"
    finally:
        hook.close()
