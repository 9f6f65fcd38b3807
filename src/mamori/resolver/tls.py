"""TLS for the encrypted DNS listeners: the certificate (loaded, reloaded) and the
device names clients give.

``CertStore`` holds the ``[tls]`` certificate as ready server contexts, one per
ALPN set (TLS 1.2 at least, 1.3 preferred by OpenSSL). It is loaded again on
SIGHUP (``reload``) and when the files change (``check``, ACME renewals); a new
certificate that does not load keeps the old one serving, with one log line.
Open connections keep the context they started with; new ones get the new one.
The connections themselves: tlsconn.py.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from pathlib import Path
from typing import Any

from mamori.errors import MamoriError

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"[a-z0-9-]{1,63}")


class TlsError(MamoriError):
    """The ``[tls]`` certificate or key cannot be loaded (message names the file)."""


def device_name(text: str | None) -> str | None:
    """A device name from a client (DoH path segment, server-name label): lowercased,
    letters, digits and hyphens, 1 to 63 of them; None when *text* is not one."""
    if not text:
        return None
    name = text.lower()
    return name if _DEVICE.fullmatch(name) else None


def device_from_sni(sni: str | None, server_name: str) -> str | None:
    """The device named in a TLS server name ``{device}.{server_name}`` (AdGuard DNS
    style); None for the bare server name, another name or no name."""
    if not sni or not server_name:
        return None
    sni = sni.lower().rstrip(".")
    suffix = "." + server_name
    if not sni.endswith(suffix):
        return None
    label = sni[: -len(suffix)]
    return device_name(label) if "." not in label else None


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class CertStore:
    """The ``[tls]`` certificate and key as server contexts (``context(alpn)``).

    Raises TlsError from the constructor when they do not load (the service does not
    start); afterwards a failed load keeps the previous contexts.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self.alpn_sets: dict[tuple[str, ...], ssl.SSLContext] = {}
        self.generation = 0  # bumped by every successful (re)load
        self.reload_failures = 0
        self._stamps = self._read_stamps()
        self._contexts({("dot",), ("h2", "http/1.1")})

    def _read_stamps(self) -> tuple[tuple[int, int, int], ...]:
        try:
            return (_stamp(self.cert), _stamp(self.key))
        except OSError as e:
            raise TlsError(f"[tls]: cannot read {e.filename}: {e.strerror}") from e

    def _build(self, alpn: tuple[str, ...]) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as e:
            raise TlsError(
                f"[tls] cert {self.cert} / key {self.key}: not a PEM certificate chain and its"
                f" private key, or the key does not match the certificate ({e})"
            ) from e
        except OSError as e:
            raise TlsError(f"[tls] cert {self.cert} / key {self.key}: {e.strerror or e}") from e
        ctx.set_alpn_protocols(list(alpn))
        ctx.sni_callback = _remember_sni
        return ctx

    def _contexts(self, alpns: set[tuple[str, ...]]) -> None:
        built = {alpn: self._build(alpn) for alpn in alpns}  # all or nothing
        self.alpn_sets = built
        self.generation += 1

    def context(self, alpn: tuple[str, ...]) -> ssl.SSLContext:
        """The current server context offering *alpn* (built on first use)."""
        ctx = self.alpn_sets.get(alpn)
        if ctx is None:
            ctx = self.alpn_sets[alpn] = self._build(alpn)
        return ctx

    def reload(self) -> bool:
        """Load the files again (SIGHUP); True when the new certificate is in force.
        A failure is logged in one line and the old certificate keeps serving."""
        try:
            stamps = self._read_stamps()
            self._contexts(set(self.alpn_sets))
        except TlsError as e:
            self.reload_failures += 1
            log.error("tls: new certificate not loaded, the old one keeps serving: %s", e)
            return False
        self._stamps = stamps
        return True

    def check(self) -> bool:
        """Reload when the certificate or key file changed on disk (ACME renewal);
        True when a new certificate came into force."""
        try:
            stamps = (_stamp(self.cert), _stamp(self.key))
        except OSError:
            return False  # mid-rename: the next check sees the new file
        if stamps == self._stamps:
            return False
        self._stamps = stamps  # a broken file is reported once, not at every check
        if self.reload():
            log.info("tls: certificate %s reloaded (file changed)", self.cert)
            return True
        return False


def _remember_sni(sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
    """SNI callback: keep the server name the client asked for on its SSLObject (the
    ssl module does not expose it on the server side)."""
    sslobj.mamori_sni = name
