"""Helper processes of ``mamori serve`` other than the workers, kept running.

The passive DNS collectors (``[pdns] dnstap``: ``mamori pdns collect``;
``[pdns] capture``: ``mamori pdns capture``) run as child processes. One that
exits or is killed is started again, as the supervisor does for workers: at
once for the first ``restarts_before_backoff`` exits within ``window``
seconds, then after a growing delay (``first_backoff`` seconds, doubling up to
``backoff_max``), each exit logged with its cause (exit code or signal). A
child that stays up for ``window`` seconds is back to immediate restarts.

(The feed worker, ``feeds/worker.py``, is not kept running: it is started per
update, and an update whose worker dies is reported as failed, the last good
version kept, and tried again at the feed's next refresh.)
"""

from __future__ import annotations

import collections
import logging
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger("mamori.supervisor")

POLL_EVERY = 0.2  # seconds between looks at the children
STOP_GRACE = 10.0  # seconds a child gets to stop after SIGTERM before SIGKILL


@dataclass
class Child:
    """One kept-running helper: its name in logs, its command, its current process."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0  # since the service started
    recent: collections.deque[float] = field(default_factory=collections.deque)
    backoff: float = 0.0  # seconds of the current delay (0: none)
    start_at: float = 0.0  # monotonic time of the next start, while it is down

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def describe(returncode: int) -> str:
    """``exited with status 3`` / ``killed by SIGKILL`` of a Popen return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class ChildSupervisor(threading.Thread):
    """Starts *children* and restarts each one that ends, with back-off, until ``stop``."""

    def __init__(
        self,
        children: list[Child],
        restarts_before_backoff: int = 3,
        window: float = 30.0,
        first_backoff: float = 1.0,
        backoff_max: float = 60.0,
    ) -> None:
        super().__init__(name="mamori-children", daemon=True)
        self.children = children
        self.restarts_before_backoff = restarts_before_backoff
        self.window = window
        self.first_backoff = first_backoff
        self.backoff_max = backoff_max
        self._stop_flag = threading.Event()
        self._lock = threading.Lock()  # the children's processes: the thread and stop()

    def run(self) -> None:
        while True:
            with self._lock:
                if self._stop_flag.is_set():
                    return
                for child in self.children:
                    self._look(child, time.monotonic())
            self._stop_flag.wait(POLL_EVERY)

    def _look(self, child: Child, now: float) -> None:
        if child.proc is None:
            if now >= child.start_at:
                self._spawn(child)
            return
        code = child.proc.poll()
        if code is None:
            return
        pid, child.proc = child.proc.pid, None
        child.restarts += 1
        child.recent.append(now)
        while child.recent and now - child.recent[0] > self.window:
            child.recent.popleft()
        how = describe(code)
        if len(child.recent) > self.restarts_before_backoff:
            child.backoff = min(max(child.backoff * 2, self.first_backoff), self.backoff_max)
            log.error(
                "%s (pid %d) %s: %d restarts in %.0fs, next start in %.1fs",
                child.name, pid, how, len(child.recent), self.window, child.backoff,
            )  # fmt: skip
            child.start_at = now + child.backoff
            return
        child.backoff = 0.0
        log.warning("%s (pid %d) %s: restarting it", child.name, pid, how)
        self._spawn(child)

    def _spawn(self, child: Child) -> None:
        try:
            child.proc = subprocess.Popen(child.argv, stdin=subprocess.DEVNULL)
        except OSError as e:
            child.backoff = min(max(child.backoff * 2, self.first_backoff), self.backoff_max)
            child.start_at = time.monotonic() + child.backoff
            log.error("%s: cannot start (%s), next try in %.1fs", child.name, e, child.backoff)
            return
        log.info("%s: started (pid %d)", child.name, child.proc.pid)

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """Stop restarting; SIGTERM every child, SIGKILL those still there after
        *timeout* seconds."""
        self._stop_flag.set()
        with self._lock:
            procs = [c.proc for c in self.children if c.proc is not None]
            for proc in procs:
                proc.terminate()
            deadline = time.monotonic() + timeout
            for proc in procs:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.join(timeout)
