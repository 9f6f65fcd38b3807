"""A worker drops query events at the source while the control plane's writer is behind."""

from __future__ import annotations

import asyncio
import marshal
from pathlib import Path
from typing import Any

from mamori import config
from mamori.resolver import channel as ch
from mamori.resolver.dataplane import DataPlane
from mamori.resolver.events import EventQueue
from mamori.resolver.worker import Worker

CFG = config.loads('[upstream]\nservers = ["127.0.0.1:9"]\n', Path("w.toml"))
EVENT = (1.0, "192.0.2.1", b"\x01a\x00\x00\x01\x00\x01\x00", 0, "", 0, "", 0, "", False, None, "")


def test_events_are_sent_home_then_dropped_and_counted_while_shedding() -> None:
    async def go() -> tuple[list[int], int, int]:
        ours, theirs = ch.pair()
        got: list[int] = []
        home = ch.Channel(ours, lambda kind, payload, _f: got.append(len(marshal.loads(payload)))
                          if kind == ch.EVENTS else None, lambda: None)  # fmt: skip
        home.start()
        w = Worker(1, theirs, [])
        w.channel.start()
        w.dp = DataPlane(CFG, [], EventQueue(1000))
        for _ in range(5):
            w.dp.events.put(EVENT)
        w._flush()  # sent home
        w.on_message(ch.FLOW, marshal.dumps((True, False)), [])
        for _ in range(7):
            w.dp.events.put(EVENT)
        w._flush()  # dropped here, counted
        await asyncio.sleep(0.05)
        dropped = w.dp.events.dropped
        w.on_message(ch.FLOW, marshal.dumps((False, False)), [])
        w.dp.events.put(EVENT)
        w._flush()
        await asyncio.sleep(0.05)
        left: Any = len(w.dp.events.items)
        home.close()
        w.channel.close()
        w.dp.pipeline.close()
        return got, dropped, left

    got, dropped, left = asyncio.run(go())
    assert got == [5, 1] and dropped == 7 and left == 0
