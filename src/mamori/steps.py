"""Long jobs written as generators that yield between small steps.

Loading a million-rule zone, diffing two versions of it, applying a big IXFR:
each is a generator yielding every few milliseconds of work. ``drive`` runs
one on the event loop, answering queries between steps; ``run``
(``mamori.policy.steps``) runs one to the end at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator
from typing import TypeVar

from mamori.policy.steps import run

log = logging.getLogger(__name__)

__all__ = ["drive", "run"]

T = TypeVar("T")


async def drive(steps: Generator[None, None, T], what: str = "job") -> T:
    """Run a step-wise job on the event loop, letting other tasks in at each step."""
    count = 0
    longest = 0.0
    longest_at = 0
    try:
        while True:
            t0 = time.perf_counter()
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            finally:
                took = time.perf_counter() - t0
                if took > longest:
                    longest, longest_at = took, count
                count += 1
            await asyncio.sleep(0)
    finally:
        log.debug(
            "%s: %d steps, longest %.1f ms (step %d)", what, count, longest * 1000, longest_at
        )
