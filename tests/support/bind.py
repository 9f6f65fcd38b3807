"""Debian's BIND 9 (named) as a real primary or secondary on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from tests.support.net import free_port


class Bind:
    def __init__(
        self,
        named: str,
        workdir: Path,
        zones: str,
        keys: dict[str, tuple[str, str]] | None = None,
        options: str = "",
        recursion: bool = False,
    ) -> None:
        """*zones*: named.conf zone statements (``DIR`` is replaced by the work dir);
        *keys*: name -> (algorithm, base64 secret)."""
        self.named = named
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.zones = zones.replace("DIR", str(self.dir))
        self.keys = keys or {}
        self.options = options
        self.recursion = recursion
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        return (self.dir / "named.stderr").read_text(errors="replace")

    def start(self, probe_zone: str | None = None) -> Bind:
        keys = "".join(
            f'key "{n}" {{ algorithm {a}; secret "{s}"; }};\n' for n, (a, s) in self.keys.items()
        )
        conf = self.dir / "named.conf"
        conf.write_text(
            keys + "options {\n"
            f'  directory "{self.dir}";\n'
            f'  pid-file "{self.dir}/named.pid";\n'
            f'  session-keyfile "{self.dir}/session.key";\n'
            f'  managed-keys-directory "{self.dir}";\n'
            f"  listen-on port {self.port} {{ 127.0.0.1; }};\n"
            "  listen-on-v6 { none; };\n"
            + (
                "  recursion yes;\n  allow-recursion { 127.0.0.1; };\n"
                if self.recursion
                else "  recursion no;\n"
            )
            + ""
            "  dnssec-validation no;\n"
            "  notify-delay 0;\n"
            f"  {self.options}\n"
            "};\n"
            "controls { };\n" + self.zones
        )
        err = open(self.dir / "named.stderr", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.named, "-g", "-4", "-n", "1", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        err.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("named exited:\n" + self.log)
            running = "running" in self.log
            if running and (probe_zone is None or self.serial(probe_zone) is not None):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("named did not start:\n" + self.log)

    def serial(self, zone: str) -> int | None:
        try:
            r = dns.query.udp(
                dns.message.make_query(zone, "SOA"), "127.0.0.1", port=self.port, timeout=0.5
            )
        except (dns.exception.DNSException, OSError):
            return None
        for rrset in r.answer:
            if rrset.rdtype == 6:
                return int(rrset[0].serial)
        return None

    def reload(self) -> None:
        """SIGHUP: re-read the configuration and zone files (changed zones NOTIFY)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
