"""Keeping background work (writer threads, compile and feed children) out of the DNS
loop's way on a shared core."""

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


def background_process() -> None:
    """Make this whole process yield the CPU to the DNS service (compile and feed children).

    SCHED_IDLE where Linux offers it (the scheduler runs it only when nothing else
    wants the core: a child pinned to the DNS loop's core by ``taskset`` costs the loop
    nothing), else the lowest nice value.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
