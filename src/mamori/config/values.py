"""Values in the configuration: addresses, keys, sizes, ranges, and their parsers.

Each parser takes the raw TOML value (plus the parse context and the
resolv.conf path, for the few that need them) and returns the typed value or
raises ``InvalidValueError`` with a message; config.py adds file, line and key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """A host:port pair; *host* is a literal IPv4 or IPv6 address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class UpstreamServer:
    """One ``[upstream] servers`` entry.

    *transport*: "udp" (with TCP fallback on TC=1), "tcp", "tls" (DNS over TLS, RFC
    7858) or "https" (DNS over HTTPS, RFC 8484). For "https" the endpoint's host may
    be a host name (resolved by the system when connecting); otherwise an address.
    *tls_name*: the name the server's certificate must carry ("tls", "https"; "" = its
    address); *path*: the DoH URL's path ("https").
    """

    endpoint: Endpoint
    transport: str = "udp"
    tls_name: str = ""
    path: str = ""

    def __str__(self) -> str:
        name = f"#{self.tls_name}" if self.tls_name and self.tls_name != self.endpoint.host else ""
        if self.transport == "https":
            return f"https://{self.endpoint}{self.path}{name}"
        return f"{self.transport}://{self.endpoint}{name}"


@dataclass(frozen=True)
class TsigSpec:
    """A TSIG key: ``name:algorithm:base64secret`` in the config."""

    name: str
    algorithm: str  # hmac-sha256, hmac-sha1, hmac-sha512, ...
    secret: str  # base64

    def __str__(self) -> str:
        return f"{self.name} ({self.algorithm})"  # never the secret


TSIG_ALGORITHMS = ("hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512")


class InvalidValueError(Exception):
    pass


def int_range(lo: int, hi: int) -> Any:
    def conv(raw: Any, _ctx: Any, _rc: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidValueError(f"must be an integer, got {raw!r}")
        if not lo <= raw <= hi:
            raise InvalidValueError(f"must be between {lo} and {hi}, got {raw}")
        return raw

    return conv


MAX_WORKERS = 256


def workers(raw: Any, _ctx: Any, _rc: str) -> int:
    """``[server] workers``: 1 to MAX_WORKERS, or "auto" (one per CPU this process may use)."""
    if raw == "auto":
        try:
            return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))
        except (AttributeError, OSError):
            return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidValueError(f'must be a number of workers or "auto", got {raw!r}')
    if not 1 <= raw <= MAX_WORKERS:
        raise InvalidValueError(f'must be between 1 and {MAX_WORKERS} (or "auto"), got {raw}')
    return raw


def float_range(lo: float, hi: float) -> Any:
    def conv(raw: Any, _ctx: Any, _rc: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidValueError(f"must be a number, got {raw!r}")
        if not lo <= raw <= hi:
            raise InvalidValueError(f"must be between {lo} and {hi}, got {raw}")
        return float(raw)

    return conv


def boolean(raw: Any, _ctx: Any, _rc: str) -> bool:
    if not isinstance(raw, bool):
        raise InvalidValueError(f"must be true or false, got {raw!r}")
    return raw


def choice(*choices: str) -> Any:
    def conv(raw: Any, _ctx: Any, _rc: str) -> str:
        if raw not in choices:
            raise InvalidValueError(f"must be one of {', '.join(choices)}; got {raw!r}")
        return str(raw)

    return conv


def size(raw: Any, _ctx: Any, _rc: str) -> int:
    """Bytes as an integer or a string with K/M/G suffix ("64M")."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    if isinstance(raw, str):
        m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?)?\s*", raw, re.IGNORECASE)
        if m:
            mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[(m.group(2) or "")[:1].upper()]
            if int(m.group(1)) > 0:
                return int(m.group(1)) * mult
    raise InvalidValueError(f'must be a positive size like 134217728 or "128M", got {raw!r}')


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """Parse ``1.2.3.4``, ``1.2.3.4:53``, ``::1``, ``[::1]:53``."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
        if not m:
            raise InvalidValueError(f"bad address {text!r} (use [IPv6]:port)")
        host = m.group(1)
        port = int(m.group(2)) if m.group(2) else default_port
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise InvalidValueError(f"bad port in {text!r}")
        port = int(p)
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        raise InvalidValueError(
            f"{host!r} is not an IP address (host names are not resolved)"
        ) from None
    if not 0 < port < 65536:
        raise InvalidValueError(f"port out of range in {text!r}")
    return Endpoint(str(addr), port)


def endpoints(raw: Any, _ctx: Any, _rc: str) -> tuple[Endpoint, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise InvalidValueError(
            'must be an address or a non-empty list of addresses, e.g. ["127.0.0.1:53"]'
        )
    return tuple(parse_endpoint(x, 53) for x in items)


def endpoints_default_port(port: int) -> Any:
    """A list of addresses whose port defaults to *port* (853 for DoT, 443 for DoH)."""

    def check(raw: Any, _ctx: Any, _rc: str) -> tuple[Endpoint, ...]:
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise InvalidValueError(
                f'must be an address or a list of addresses, e.g. ["127.0.0.1:{port}"]'
            )
        return tuple(parse_endpoint(x, port) for x in items)

    return check


def host_name(raw: Any, _ctx: Any, _rc: str) -> str:
    """A DNS host name (letters, digits, hyphens; no trailing dot), lowercased."""
    label = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
    text = raw.lower().rstrip(".") if isinstance(raw, str) else ""
    if not re.fullmatch(rf"{label}(\.{label})+", text):
        raise InvalidValueError(f'must be a host name like "dns.example.net", got {raw!r}')
    return text


def endpoint(raw: Any, _ctx: Any, _rc: str) -> Endpoint:
    if not isinstance(raw, str):
        raise InvalidValueError('must be an address like "127.0.0.1:8053"')
    return parse_endpoint(raw, 8053)


def networks(raw: Any, _ctx: Any, _rc: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise InvalidValueError('must be a list of prefixes, e.g. ["192.168.0.0/16", "::1"]')
    out = []
    for x in items:
        try:
            out.append(str(ipaddress.ip_network(x.strip(), strict=False)))
        except ValueError:
            raise InvalidValueError(f"{x!r} is not an IP prefix") from None
    return tuple(out)


def read_resolv_conf(path: str) -> list[str]:
    """Nameserver addresses listed in a resolv.conf file."""
    servers = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                servers.append(parts[1].split("%")[0])
    return servers


_HOST_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(\.{_HOST_LABEL})*")


def _tls_name(name: str, item: str) -> str:
    low = name.lower().rstrip(".")
    if not _HOST_NAME.fullmatch(low):
        raise InvalidValueError(f"{name!r} in {item!r} is not a host name to verify")
    return low


def _encrypted_upstream(transport: str, text: str, item: str) -> UpstreamServer:
    """``tls://ADDR[:853][#name]`` or ``https://HOST[:443][/path][#name]``."""
    text, _, name = text.partition("#")
    tls_name = _tls_name(name, item) if name else ""
    if transport == "tls":
        return UpstreamServer(parse_endpoint(text, 853), "tls", tls_name)
    from urllib.parse import urlsplit

    try:
        url = urlsplit("https://" + text)
        port = url.port or 443
    except ValueError as e:
        raise InvalidValueError(f"bad URL {item!r}: {e}") from None
    host = url.hostname or ""
    if url.query or url.username or not host:
        raise InvalidValueError(f"bad URL {item!r} (https://HOST[:PORT]/path)")
    try:
        endpoint = Endpoint(str(ipaddress.ip_address(host)), port)
    except ValueError:
        endpoint = Endpoint(_tls_name(host, item), port)
        tls_name = tls_name or endpoint.host
    return UpstreamServer(endpoint, "https", tls_name, url.path or "/dns-query")


def upstreams(raw: Any, _ctx: Any, resolv_conf: str) -> tuple[UpstreamServer, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise InvalidValueError('must be a non-empty list, e.g. ["127.0.0.1:53", "tcp://[::1]:53"]')
    out: list[UpstreamServer] = []
    for item in items:
        transport = "udp"
        text = item.strip()
        if "://" in text:
            transport, _, text = text.partition("://")
            if transport in ("tls", "https"):
                out.append(_encrypted_upstream(transport, text, item))
                continue
            if transport not in ("udp", "tcp"):
                raise InvalidValueError(
                    f"unknown transport {transport!r} in {item!r} (udp, tcp, tls or https)"
                )
        if text == "system":
            try:
                addrs = read_resolv_conf(resolv_conf)
            except OSError as e:
                raise InvalidValueError(
                    f'"system" but {resolv_conf} cannot be read: {e.strerror}'
                ) from e
            if not addrs:
                raise InvalidValueError(f'"system" but {resolv_conf} lists no nameserver')
            out.extend(UpstreamServer(parse_endpoint(a, 53), transport) for a in addrs)
            continue
        out.append(UpstreamServer(parse_endpoint(text, 53), transport))
    return tuple(out)


def primaries(raw: Any, _ctx: Any, _rc: str) -> tuple[Endpoint, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise InvalidValueError('must be "HOST[:PORT]" or a list of them')
    return tuple(parse_endpoint(i, 53) for i in items)


def tsig(raw: Any, _ctx: Any, _rc: str) -> TsigSpec:
    import base64
    import binascii

    if not isinstance(raw, str) or raw.count(":") < 2:
        raise InvalidValueError('must be "name:algorithm:base64secret"')
    name, alg, secret = raw.split(":", 2)
    alg = alg.lower()
    if not name:
        raise InvalidValueError("the key name is empty")
    if alg not in TSIG_ALGORITHMS:
        raise InvalidValueError(f"unknown algorithm {alg!r} (known: {', '.join(TSIG_ALGORITHMS)})")
    try:
        if not base64.b64decode(secret, validate=True):
            raise ValueError
    except (binascii.Error, ValueError):
        raise InvalidValueError("the secret is not base64") from None
    return TsigSpec(name.rstrip(".") + ".", alg, secret)


def tsig_list(raw: Any, ctx: Any, rc: str) -> tuple[TsigSpec, ...]:
    if not isinstance(raw, list):
        raise InvalidValueError('must be a list of "name:algorithm:base64secret"')
    return tuple(tsig(item, ctx, rc) for item in raw)


def notify_targets(raw: Any, _ctx: Any, _rc: str) -> tuple[Endpoint, ...]:
    if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
        raise InvalidValueError('must be a list of "HOST[:PORT]"')
    return tuple(parse_endpoint(i, 53) for i in raw)


def key_names(raw: Any, _ctx: Any, _rc: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(i, str) and i for i in raw):
        raise InvalidValueError("must be a list of key names")
    return tuple(i.rstrip(".") + "." for i in raw)


def path(raw: Any, ctx: Any, _rc: str) -> Path:
    if not isinstance(raw, str) or not raw:
        raise InvalidValueError("must be a file path")
    p = Path(raw).expanduser()
    return p if p.is_absolute() else (ctx.base / p)


def paths(raw: Any, ctx: Any, rc: str) -> tuple[Path, ...]:
    """A file path or a list of them (maybe empty)."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise InvalidValueError("must be a file path or a list of file paths")
    return tuple(path(i, ctx, rc) for i in items)


def zone_name(raw: Any, _ctx: Any, _rc: str) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+\.?", raw) or ".." in raw:
        raise InvalidValueError(f'must be a zone name like "rpz.example.", got {raw!r}')
    return raw.lower().rstrip(".") + "."


def rpz_policy(raw: Any, _ctx: Any, _rc: str) -> str:
    choices = ("given", "disabled", "passthru", "drop", "tcp-only", "nxdomain", "nodata")
    if isinstance(raw, str) and (raw in choices or re.fullmatch(r"cname:[A-Za-z0-9_.*-]+", raw)):
        return raw
    raise InvalidValueError(f"must be one of {', '.join(choices)} or cname:TARGET; got {raw!r}")


def feed_name(raw: Any, _ctx: Any, _rc: str) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", raw):
        raise InvalidValueError("must be a short name: lowercase letters, digits, hyphens")
    return raw


def http_url(raw: Any, _ctx: Any, _rc: str) -> str:
    if not isinstance(raw, str) or not re.match(r"^https?://[^/\s]+", raw):
        raise InvalidValueError("must be an http:// or https:// URL")
    return raw


def feed_action(raw: Any, _ctx: Any, _rc: str) -> str:
    if isinstance(raw, str) and (
        raw in ("nxdomain", "nodata") or re.fullmatch(r"cname:[A-Za-z0-9_.*-]+", raw)
    ):
        return raw
    raise InvalidValueError(f"must be nxdomain, nodata or cname:TARGET; got {raw!r}")


def group_names(raw: Any, ctx: Any, rc: str) -> tuple[str, ...]:
    """``groups = ["name", ...]``: [[group]] names (checked against them by the loader)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidValueError('must be a list of [[group]] names, e.g. ["kids"]')
    return tuple(feed_name(x, ctx, rc) for x in raw)


_MAC = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")


def client_ids(raw: Any, _ctx: Any, _rc: str) -> tuple[str, ...]:
    """Device names: a DoH path or DoT/DoQ server-name label (AdGuard DNS style), or a
    MAC address (EDNS client MAC; ``aa:bb:cc:dd:ee:ff`` or with hyphens, kept lowercase
    with colons, as the query log shows it)."""
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise InvalidValueError("must be a list of device names or MAC addresses")
    out = []
    for x in raw:
        low = x.lower()
        if _MAC.fullmatch(low):
            out.append(low.replace("-", ":"))
        elif re.fullmatch(r"[a-z0-9-]{1,63}", low):
            out.append(low)
        else:
            raise InvalidValueError(
                f"{x!r} is neither a device name (letters, digits, hyphens) nor a MAC"
                " address (aa:bb:cc:dd:ee:ff)"
            )
    return tuple(out)


def feed_names(raw: Any, ctx: Any, rc: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidValueError("must be a list of [[feed]] names")
    return tuple(feed_name(x, ctx, rc) for x in raw)


def ip_address(raw: Any, _ctx: Any, _rc: str) -> str:
    try:
        return str(ipaddress.ip_address(raw if isinstance(raw, str) else ""))
    except ValueError:
        raise InvalidValueError(f"must be an IP address; got {raw!r}") from None


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(lo: int, hi: int) -> Any:
    """Seconds as an integer or a string with units: ``"90s"``, ``"30m"``, ``"24h"``,
    ``"7d"``, ``"2w"``, ``"1h30m"``; between *lo* and *hi* seconds."""

    def conv(raw: Any, _ctx: Any, _rc: str) -> int:
        seconds: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            seconds = raw
        elif isinstance(raw, str) and re.fullmatch(r"(?:\s*\d+\s*[smhdw])+\s*", raw.lower()):
            # one unit or several, largest first or not: "24h", "1h30m", "1w2d"
            seconds = sum(
                int(n) * _DURATION_UNITS[u]
                for n, u in re.findall(r"(\d+)\s*([smhdw])", raw.lower())
            )
        if seconds is None:
            raise InvalidValueError(f'must be a duration like "24h", "90m" or 3600; got {raw!r}')
        if not lo <= seconds <= hi:
            raise InvalidValueError(f"must be between {lo} and {hi} seconds; got {seconds}")
        return seconds

    return conv
