"""Long jobs written as generators that yield between small steps.

Loading a million-rule zone, diffing two versions of it, applying a big IXFR:
each is a generator yielding every few milliseconds of work. ``run`` runs one to
the end at once (start-up, command-line tools, tests); an event loop drives it
step by step elsewhere (``mamori.steps.drive``), answering queries between steps.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")


def run(steps: Generator[None, None, T]) -> T:
    """Run a step-wise job to the end in one go; return what the generator returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
