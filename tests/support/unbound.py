"""Debian's Unbound as a real peer on 127.0.0.1 (forwarding to a local fixture)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from tests.support.net import free_port


class Unbound:
    def __init__(
        self,
        binary: str,
        workdir: Path,
        forward_port: int,
        extra: str = "",
        server_extra: str = "",
        verbosity: int = 1,
    ) -> None:
        """*extra*: clauses after the forward zone; *server_extra*: lines of the server
        clause (each indented two spaces, newline-terminated); *verbosity*: Unbound's
        (4 logs each zone transfer step: SOA probes, their timeouts, IXFR/AXFR)."""
        self.binary = binary
        self.server_extra = server_extra
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.forward_port = forward_port
        self.extra = extra
        self.verbosity = verbosity
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, probe: str = ".") -> Unbound:
        conf = self.dir / "unbound.conf"
        conf.write_text(
            "server:\n"
            f"  interface: 127.0.0.1@{self.port}\n  num-threads: 1\n  do-daemonize: no\n"
            f'  chroot: ""\n  username: ""\n  directory: "{self.dir}"\n'
            f'  pidfile: "{self.dir}/unbound.pid"\n  use-syslog: no\n'
            f"  verbosity: {self.verbosity}\n"
            "  access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n"
            '  module-config: "respip iterator"\n'
            # test. is one of Unbound's locally served zones (RFC 6761): let it forward.
            '  local-zone: "test." nodefault\n'
            + self.server_extra
            + "remote-control:\n  control-enable: no\n"
            f'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{self.forward_port}\n'
            + self.extra
        )
        self._err = (self.dir / "unbound.stderr").open("wb")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=self._err
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._err.close()
                raise RuntimeError((self.dir / "unbound.stderr").read_text())
            try:
                q = dns.message.make_query(probe, "SOA")
                dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.3)
                return self
            except (dns.exception.DNSException, OSError):  # not ready, or a startup answer
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("unbound did not start: " + (self.dir / "unbound.stderr").read_text())

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._err.close()

    def log(self) -> str:
        """What Unbound has written to stderr so far."""
        try:
            return (self.dir / "unbound.stderr").read_text(errors="replace")
        except OSError:
            return ""
