"""Helpers for the background threads of the control plane (writers, sensors)."""

from __future__ import annotations

import contextlib
import os
import threading

BACKGROUND_NICE = 10


def lower_thread_priority() -> None:
    """Make the calling thread yield the CPU to the DNS loop (Linux per-thread nice).

    When the DNS loop and a writer share a core, a writer busy inside SQLite
    (GIL released, CPU busy) would otherwise delay answers by a scheduler slice.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux / not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
