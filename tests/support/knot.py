"""Debian's Knot DNS (knotd) as a real authoritative upstream on 127.0.0.1."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from tests.support.net import free_port


class Knot:
    def __init__(self, knotd: str, workdir: Path, zones: dict[str, str]) -> None:
        self.knotd = knotd
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.zones = zones
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Knot:
        zone_lines = []
        for origin, text in self.zones.items():
            f = self.dir / f"{origin.rstrip('.')}.zone"
            f.write_text(text)
            zone_lines.append(f'  - domain: {origin}\n    file: "{f}"')
        conf = self.dir / "knot.conf"
        conf.write_text(
            "server:\n"
            f'    rundir: "{self.dir}"\n'
            f"    listen: 127.0.0.1@{self.port}\n"
            "    background-workers: 1\n"
            "    udp-workers: 1\n"
            "    tcp-workers: 1\n"
            "database:\n"
            f'    storage: "{self.dir}"\n'
            "log:\n  - target: stderr\n    any: warning\n"
            "zone:\n" + "\n".join(zone_lines) + "\n"
        )
        self._err = open(self.dir / "knotd.stderr", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.knotd, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=self._err
        )
        origin = next(iter(self.zones))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._err.close()
                raise RuntimeError((self.dir / "knotd.stderr").read_text())
            try:
                q = dns.message.make_query(origin, "SOA")
                r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.3)
                if r.answer:
                    return self
            except (dns.exception.DNSException, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("knotd did not start: " + (self.dir / "knotd.stderr").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._err.close()
