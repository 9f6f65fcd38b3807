"""Polling for a condition in integration tests (bounded in time)."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    """True as soon as *cond* holds; its last value after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()
