"""The worker factory: a small single-threaded process that forks the data-plane workers.

``mamori serve`` forks it first thing, before the control plane starts any
thread, so every worker is a fork of a process that holds no lock of another
thread (logging, stdio buffers, SQLite) and shares the imported modules' pages
copy-on-write with its siblings. The control plane asks it over a socket pair
for a worker (the worker's number, its channel and its listening sockets
travel as SCM_RIGHTS descriptors); it forks, closes its copies (so exactly
one process holds each worker's sockets), reports the pid, and reports each
worker's exit status when it reaps it. It dies with the control plane
(PR_SET_PDEATHSIG) and exits when its socket closes.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import gc
import logging
import marshal
import os
import select
import signal
import socket
from collections.abc import Callable

log = logging.getLogger("mamori.supervisor")

PR_SET_PDEATHSIG = 1
_MAX_FDS = 64

# Reports (marshal) from the zygote: ("spawned", worker number, pid) or ("exited", pid, status)
Report = tuple[str, int, int]


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send *sig* to this process when its parent exits (no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


class Zygote:
    """The control plane's handle on the worker factory."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock

    @classmethod
    def fork(cls, body: Callable[[int, socket.socket, list[socket.socket]], None]) -> Zygote:
        """Fork the factory; *body(number, channel, sockets)* is what each worker runs."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the zygote
            code = 0
            try:
                ours.close()
                _serve(theirs, body)
            except BaseException:
                code = 1
            os._exit(code)
        theirs.close()
        ours.setblocking(False)
        return cls(pid, ours)

    def spawn(self, number: int, channel_fd: int, socket_fds: list[int]) -> None:
        """Ask for worker *number* (the descriptors are duplicated into the zygote)."""
        fds = array.array("i", [channel_fd, *socket_fds]).tobytes()
        self.sock.setblocking(True)
        try:
            self.sock.sendmsg(
                [marshal.dumps(("spawn", number))],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)],
            )
        finally:
            self.sock.setblocking(False)

    def reports(self) -> list[Report]:
        """What the zygote said since the last call (non-blocking); [] when nothing.

        Raises EOFError when the zygote is gone.
        """
        out: list[Report] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as e:
                raise EOFError(str(e)) from e
            if not data:
                raise EOFError("worker factory exited")
            out.append(marshal.loads(data))

    def close(self) -> None:
        """Let the zygote exit (its workers are stopped separately)."""
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, 0)


def _serve(
    sock: socket.socket, body: Callable[[int, socket.socket, list[socket.socket]], None]
) -> None:
    die_with_parent()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the control plane decides; we die with it
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock.setblocking(True)
    gc.collect()
    gc.freeze()  # what workers inherit stays out of their GC passes (no copy-on-write)
    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            _reap(sock)
        if sock.fileno() in ready:
            data, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(_MAX_FDS * 4))
            if not data:
                return  # the control plane is gone
            fds: list[int] = []
            for level, ctype, cdata in anc:
                if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                    usable = len(cdata) - len(cdata) % 4
                    fds += list(memoryview(cdata[:usable]).cast("i"))
            _op, number = marshal.loads(data)
            pid = os.fork()
            if pid == 0:  # the worker
                code = 0
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for sig in (signal.SIGTERM, signal.SIGHUP):
                        signal.signal(sig, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    sock.close()
                    chan = socket.socket(fileno=fds[0])
                    socks = [socket.socket(fileno=fd) for fd in fds[1:]]
                    body(number, chan, socks)
                except BaseException:
                    logging.getLogger("mamori.worker").exception("worker %d failed", number)
                    code = 1
                finally:
                    logging.shutdown()
                os._exit(code)
            for fd in fds:
                os.close(fd)
            sock.send(marshal.dumps(("spawned", number, pid)))


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            sock.send(marshal.dumps(("exited", pid, status)))


def describe_status(status: int) -> str:
    """``waitpid`` status as words: "exit 0", "killed by SIGKILL"."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exit {os.WEXITSTATUS(status)}"
    return f"status {status}"
