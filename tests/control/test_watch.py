"""The zone file watcher picks a change up within [policy] watch_interval (as the docs
say), and never loads a file that is still being written. Time is virtual: the watcher
gets a clock and a sleep that advance it, and the files get their modification times
from that clock, so nothing depends on how fast this machine is."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mamori import config
from mamori.control import watch

BASE = 1_800_000_000.0  # virtual time 0, as a UNIX time (the files' mtimes)
EPS = 1e-3  # mtimes are whole nanoseconds: virtual times round by less than this


class VirtualTime:
    """A clock, a sleep that moves it, and file writes scheduled at virtual times."""

    def __init__(self) -> None:
        self.t = BASE
        self.scheduled: list[tuple[float, Callable[[], None]]] = []
        self.until = float("inf")
        self.reached = asyncio.Event()

    def clock(self) -> float:
        return self.t

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.scheduled.append((BASE + when, action))
        self.scheduled.sort(key=lambda x: x[0])

    async def sleep(self, seconds: float) -> None:
        end = self.t + seconds
        while self.scheduled and self.scheduled[0][0] <= end:
            self.t, action = self.scheduled.pop(0)
            action()
        self.t = end
        if self.t >= self.until:
            self.reached.set()
            await asyncio.Event().wait()  # parked until the test cancels the watcher
        await asyncio.sleep(0)


def _write(vt: VirtualTime, path: Path, text: str) -> Callable[[], None]:
    def do() -> None:
        path.write_text(text)
        ns = int(vt.t * 1e9)
        os.utime(path, ns=(ns, ns))

    return do


def _watch(
    tmp_path: Path, interval: float, vt: VirtualTime, until: float
) -> list[tuple[float, str]]:
    """Run the watcher over the virtual time 0 .. *until*: (time, file content) per reload."""
    zone = tmp_path / "local.rpz"
    cfg = config.loads(
        f'[policy]\nwatch_interval = {interval}\n[[rpz]]\nname = "rpz.local"\nfile = "{zone}"\n',
        tmp_path / "m.toml",
        resolver=False,
    )
    reloads: list[tuple[float, str]] = []

    async def on_change() -> None:
        reloads.append((vt.t - BASE, zone.read_text()))

    async def run() -> None:
        vt.until = BASE + until
        task = asyncio.get_running_loop().create_task(
            watch.watch_zone_files(lambda: cfg, on_change, vt.sleep, vt.clock)
        )
        await vt.reached.wait()
        task.cancel()

    asyncio.run(run())
    return reloads


@pytest.mark.parametrize("interval", [5.0, 0.5])
@pytest.mark.parametrize("phase", [0.01, 0.5, 0.99])  # where in the interval the edit falls
def test_a_change_is_picked_up_within_watch_interval(
    tmp_path: Path, interval: float, phase: float
) -> None:
    zone = tmp_path / "local.rpz"
    _write(VirtualTime(), zone, "old\n")()
    os.utime(zone, (BASE - 3600, BASE - 3600))
    vt = VirtualTime()
    edited = phase * interval
    vt.at(edited, _write(vt, zone, "new\n"))
    reloads = _watch(tmp_path, interval, vt, until=edited + 4 * interval)
    assert len(reloads) == 1, reloads
    when, text = reloads[0]
    assert text == "new\n"
    assert edited < when <= edited + interval + EPS, (edited, when)


def test_a_file_still_being_written_is_loaded_once_when_complete(tmp_path: Path) -> None:
    zone = tmp_path / "local.rpz"
    _write(VirtualTime(), zone, "")()
    os.utime(zone, (BASE - 3600, BASE - 3600))
    vt = VirtualTime()
    # A slow writer appends a line every 0.4 s from 4.5 s to 7.3 s (across the check at 5 s).
    writes = [4.5 + 0.4 * i for i in range(8)]
    for i, t in enumerate(writes):
        vt.at(t, _write(vt, zone, "".join(f"line {n}\n" for n in range(i + 1))))
    reloads = _watch(tmp_path, 5.0, vt, until=20.0)
    assert len(reloads) == 1, reloads
    when, text = reloads[0]
    assert text.count("\n") == len(writes)  # the whole file, not a part of it
    assert when >= writes[-1] + watch.SETTLE - EPS  # left alone for SETTLE seconds first
    assert when <= writes[-1] + 5.0  # and within watch_interval of the last write
