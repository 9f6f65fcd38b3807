"""A throwaway certificate authority for TLS tests, made with the openssl CLI (Debian)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class TestCA:
    """A CA's certificate and key (PEM files in *directory*)."""

    __test__ = False  # not a pytest class
    directory: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path, name: str = "ca") -> TestCA:
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", f"/CN=mamori test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return cls(directory, cert, key)

    def issue(self, dns_name: str, ip: str = "127.0.0.1") -> tuple[Path, Path]:
        """A server certificate for *dns_name* (and *ip*) signed by this CA: (cert, key)."""
        base = self.directory / dns_name
        cert, key, csr = (base.with_suffix(s) for s in (".pem", ".key", ".csr"))
        ext = base.with_suffix(".ext")
        ext.write_text(
            f"subjectAltName=DNS:{dns_name},IP:{ip}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={dns_name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
        )  # fmt: skip
        return cert, key
