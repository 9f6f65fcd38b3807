"""Typed configuration: TOML file -> frozen dataclasses, with defaults and validation.

Every validation error names the file, the line and the key (``ConfigError``).
Relative paths in the file are resolved against the directory of the file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamori.errors import ConfigError

SYSTEM_RESOLV_CONF = "/etc/resolv.conf"


@dataclass(frozen=True)
class Endpoint:
    """A host:port pair; *host* is a literal IPv4 or IPv6 address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class UpstreamServer:
    endpoint: Endpoint
    transport: str = "udp"  # "udp" (with TCP fallback on TC=1) or "tcp"

    def __str__(self) -> str:
        return f"{self.transport}://{self.endpoint}"


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 53), Endpoint("::1", 53))
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    workers: int = 1
    tcp: bool = True
    max_udp_size: int = 1232
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 1000
    rate_limit: float = 1000.0
    rate_burst: float = 2000.0
    rate_limit_action: str = "refused"
    stats_interval: float = 300.0


@dataclass(frozen=True)
class UpstreamConfig:
    servers: tuple[UpstreamServer, ...] = ()
    timeout: float = 1.5
    attempts: int = 3
    down_after: int = 3
    down_for: float = 10.0


@dataclass(frozen=True)
class CacheConfig:
    max_entries: int = 200_000
    max_bytes: int = 128 * 1024 * 1024
    min_ttl: int = 0
    max_ttl: int = 86_400
    max_negative_ttl: int = 3_600
    serve_stale: bool = True
    stale_max_age: int = 86_400
    stale_answer_ttl: int = 30
    stale_refresh_interval: float = 30.0


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("mamori.db")
    query_log: bool = True
    query_log_days: int = 7
    queue_size: int = 100_000
    flush_interval: float = 0.5


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = False
    listen: Endpoint = Endpoint("127.0.0.1", 8053)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class PolicyConfig:
    """``[policy]``: settings shared by all policy zones (BIND's response-policy options)."""

    min_ns_dots: int = 1  # NSDNAME/NSIP: skip delegation points with fewer dots (TLDs)
    watch_interval: float = 5.0  # seconds between zone file change checks; 0 = off


@dataclass(frozen=True)
class TsigSpec:
    """A TSIG key: ``name:algorithm:base64secret`` in the config."""

    name: str
    algorithm: str  # hmac-sha256, hmac-sha1, hmac-sha512, ...
    secret: str  # base64

    def __str__(self) -> str:
        return f"{self.name} ({self.algorithm})"  # never the secret


TSIG_ALGORITHMS = ("hmac-sha1", "hmac-sha224", "hmac-sha256", "hmac-sha384", "hmac-sha512")


@dataclass(frozen=True)
class RpzConfig:
    """One ``[[rpz]]`` policy zone; zones apply in the order they are listed."""

    name: str = ""
    file: Path | None = None
    policy: str = "given"
    log: bool = True
    max_policy_ttl: int = 0
    on_error: str = "refuse"
    recursive_only: bool = False
    nsdname_enable: bool = True
    nsip_enable: bool = True
    # Zone transfer (secondary): primaries to AXFR/IXFR from; `file` then holds the copy.
    primary: tuple[Endpoint, ...] = ()
    tsig: TsigSpec | None = None
    on_expire: str = "stop"  # an expired transferred zone: "stop" applying it, or "keep"
    # Zone transfer (primary): serve this zone to other resolvers by AXFR/IXFR.
    publish: bool = False
    publish_keys: tuple[str, ...] = ()  # TSIG key names ([publish] keys) allowed; () = any


@dataclass(frozen=True)
class PublishConfig:
    """``[publish]``: serving policy zones (``[[rpz]] publish = true``) to secondaries."""

    allow: tuple[str, ...] = ()  # networks that may transfer without TSIG
    keys: tuple[TsigSpec, ...] = ()  # TSIG keys secondaries may sign with
    notify: tuple[Endpoint, ...] = ()  # secondaries to NOTIFY when a zone changes
    history: int = 20  # IXFR: versions kept per zone


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    web: WebConfig = field(default_factory=WebConfig)
    log: LogConfig = field(default_factory=LogConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    rpz: tuple[RpzConfig, ...] = ()


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "upstream": UpstreamConfig,
    "cache": CacheConfig,
    "store": StoreConfig,
    "web": WebConfig,
    "log": LogConfig,
    "policy": PolicyConfig,
    "publish": PublishConfig,
}


def load(path: str | Path, resolv_conf: str = SYSTEM_RESOLV_CONF, resolver: bool = True) -> Config:
    """Read and validate a config file; raise ConfigError naming file/line/key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), None, "", f"cannot read: {e.strerror}") from e
    return loads(text, p, resolv_conf, resolver)


def loads(
    text: str, path: Path, resolv_conf: str = SYSTEM_RESOLV_CONF, resolver: bool = True
) -> Config:
    """Parse and validate; *resolver* False (``mamori zones serve``): no upstream needed."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else None
        if line is None and "at end of document" in str(e):
            line = max(len(text.splitlines()), 1)
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
        raise ConfigError(str(path), line, "", f"TOML syntax error: {msg}") from e
    ctx = _Ctx(str(path), text, path.parent)
    sections: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "rpz":
            sections["rpz"] = _build_rpz(ctx, value)
            continue
        if name not in _SECTIONS:
            raise ConfigError(str(path), ctx.line(name, None), name, "unknown section")
        if not isinstance(value, dict):
            raise ConfigError(str(path), ctx.line(None, name), name, "must be a table")
        sections[name] = _build(ctx, name, _SECTIONS[name], value, resolv_conf)
    cfg = Config(path=path, **sections)
    _cross_checks(ctx, cfg, resolver)
    zones_dir = cfg.store.path.parent / "zones"
    rpz = tuple(
        dataclasses.replace(z, file=zones_dir / f"{z.name.rstrip('.')}.zone")
        if z.file is None
        else z
        for z in cfg.rpz
    )
    return dataclasses.replace(cfg, rpz=rpz)


class _Ctx:
    def __init__(self, path: str, text: str, base: Path) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.base = base

    def line(self, section: str | None, key: str | None, index: int = 0) -> int | None:
        """Best-effort line of ``key`` inside ``[section]`` (or of the section header).

        *index* selects the n-th ``[[section]]`` of an array of tables.
        """
        current: str | None = None
        seen = -1
        header = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?")
        for no, raw in enumerate(self.lines, 1):
            m = header.match(raw)
            if m:
                current = m.group(1)
                if current == section:
                    seen += 1
                if key is None and current == section and seen == index:
                    return no
                continue
            if key is not None and current == section and seen == index:
                km = re.match(r'^\s*"?([A-Za-z0-9_-]+)"?\s*=', raw)
                if km and km.group(1) == key:
                    return no
        return None

    def error(self, section: str, key: str, message: str, index: int = 0) -> ConfigError:
        return ConfigError(self.path, self.line(section, key, index), f"{section}.{key}", message)


def _build(ctx: _Ctx, section: str, cls: type, table: dict[str, Any], resolv_conf: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ctx.error(section, key, f"unknown key (known keys: {known})")
        kwargs[key] = _convert(ctx, section, key, raw, resolv_conf)
    return cls(**kwargs)


def _build_rpz(ctx: _Ctx, value: Any) -> tuple[RpzConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError(
            ctx.path, ctx.line(None, "rpz"), "rpz", "use [[rpz]] (one table per zone)"
        )
    fields = {f.name for f in dataclasses.fields(RpzConfig)}
    out: list[RpzConfig] = []
    names: set[str] = set()
    for i, table in enumerate(value):
        kwargs: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise ctx.error("rpz", key, f"unknown key (known keys: {known})", i)
            conv = _CONVERTERS[("rpz", key)]
            try:
                kwargs[key] = conv(raw, ctx, "")
            except _InvalidError as e:
                raise ctx.error("rpz", key, str(e), i) from None
        rpz = RpzConfig(**kwargs)
        if not rpz.name:
            raise ConfigError(ctx.path, ctx.line("rpz", None, i), "rpz.name", "missing zone name")
        if rpz.file is None and not rpz.primary:
            raise ConfigError(
                ctx.path,
                ctx.line("rpz", None, i),
                "rpz.file",
                "missing zone file (or primary = ... to transfer the zone)",
            )
        if rpz.tsig is not None and not rpz.primary:
            raise ctx.error("rpz", "tsig", "a TSIG key needs primary = ...", i)
        if rpz.name in names:
            raise ctx.error("rpz", "name", f"zone {rpz.name} is listed twice", i)
        names.add(rpz.name)
        out.append(rpz)
    return tuple(out)


def _zone_name(raw: Any, _ctx: _Ctx, _rc: str) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+\.?", raw) or ".." in raw:
        raise _InvalidError(f'must be a zone name like "rpz.example.", got {raw!r}')
    return raw.lower().rstrip(".") + "."


def _rpz_policy(raw: Any, _ctx: _Ctx, _rc: str) -> str:
    choices = ("given", "disabled", "passthru", "drop", "tcp-only", "nxdomain", "nodata")
    if isinstance(raw, str) and (raw in choices or re.fullmatch(r"cname:[A-Za-z0-9_.*-]+", raw)):
        return raw
    raise _InvalidError(f"must be one of {', '.join(choices)} or cname:TARGET; got {raw!r}")


def _convert(ctx: _Ctx, section: str, key: str, raw: Any, resolv_conf: str) -> Any:
    conv = _CONVERTERS.get((section, key))
    if conv is None:
        raise ctx.error(section, key, "unknown key")
    try:
        return conv(raw, ctx, resolv_conf)
    except _InvalidError as e:
        raise ctx.error(section, key, str(e)) from None


class _InvalidError(Exception):
    pass


def _int(lo: int, hi: int) -> Any:
    def conv(raw: Any, _ctx: _Ctx, _rc: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _InvalidError(f"must be an integer, got {raw!r}")
        if not lo <= raw <= hi:
            raise _InvalidError(f"must be between {lo} and {hi}, got {raw}")
        return raw

    return conv


def _float(lo: float, hi: float) -> Any:
    def conv(raw: Any, _ctx: _Ctx, _rc: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _InvalidError(f"must be a number, got {raw!r}")
        if not lo <= raw <= hi:
            raise _InvalidError(f"must be between {lo} and {hi}, got {raw}")
        return float(raw)

    return conv


def _bool(raw: Any, _ctx: _Ctx, _rc: str) -> bool:
    if not isinstance(raw, bool):
        raise _InvalidError(f"must be true or false, got {raw!r}")
    return raw


def _choice(*choices: str) -> Any:
    def conv(raw: Any, _ctx: _Ctx, _rc: str) -> str:
        if raw not in choices:
            raise _InvalidError(f"must be one of {', '.join(choices)}; got {raw!r}")
        return str(raw)

    return conv


def _size(raw: Any, _ctx: _Ctx, _rc: str) -> int:
    """Bytes as an integer or a string with K/M/G suffix ("64M")."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    if isinstance(raw, str):
        m = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?)?\s*", raw, re.IGNORECASE)
        if m:
            mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[(m.group(2) or "")[:1].upper()]
            if int(m.group(1)) > 0:
                return int(m.group(1)) * mult
    raise _InvalidError(f'must be a positive size like 134217728 or "128M", got {raw!r}')


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """Parse ``1.2.3.4``, ``1.2.3.4:53``, ``::1``, ``[::1]:53``."""
    text = text.strip()
    host, port = text, default_port
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
        if not m:
            raise _InvalidError(f"bad address {text!r} (use [IPv6]:port)")
        host = m.group(1)
        port = int(m.group(2)) if m.group(2) else default_port
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        if not p.isdigit():
            raise _InvalidError(f"bad port in {text!r}")
        port = int(p)
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        raise _InvalidError(
            f"{host!r} is not an IP address (host names are not resolved)"
        ) from None
    if not 0 < port < 65536:
        raise _InvalidError(f"port out of range in {text!r}")
    return Endpoint(str(addr), port)


def _endpoints(raw: Any, _ctx: _Ctx, _rc: str) -> tuple[Endpoint, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise _InvalidError(
            'must be an address or a non-empty list of addresses, e.g. ["127.0.0.1:53"]'
        )
    return tuple(parse_endpoint(x, 53) for x in items)


def _endpoint(raw: Any, _ctx: _Ctx, _rc: str) -> Endpoint:
    if not isinstance(raw, str):
        raise _InvalidError('must be an address like "127.0.0.1:8053"')
    return parse_endpoint(raw, 8053)


def _networks(raw: Any, _ctx: _Ctx, _rc: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise _InvalidError('must be a list of prefixes, e.g. ["192.168.0.0/16", "::1"]')
    out = []
    for x in items:
        try:
            out.append(str(ipaddress.ip_network(x.strip(), strict=False)))
        except ValueError:
            raise _InvalidError(f"{x!r} is not an IP prefix") from None
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


def _upstreams(raw: Any, _ctx: _Ctx, resolv_conf: str) -> tuple[UpstreamServer, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        raise _InvalidError('must be a non-empty list, e.g. ["127.0.0.1:53", "tcp://[::1]:53"]')
    out: list[UpstreamServer] = []
    for item in items:
        transport = "udp"
        text = item.strip()
        if "://" in text:
            transport, _, text = text.partition("://")
            if transport not in ("udp", "tcp"):
                raise _InvalidError(f"unknown transport {transport!r} in {item!r} (udp or tcp)")
        if text == "system":
            try:
                addrs = read_resolv_conf(resolv_conf)
            except OSError as e:
                raise _InvalidError(
                    f'"system" but {resolv_conf} cannot be read: {e.strerror}'
                ) from e
            if not addrs:
                raise _InvalidError(f'"system" but {resolv_conf} lists no nameserver')
            out.extend(UpstreamServer(parse_endpoint(a, 53), transport) for a in addrs)
            continue
        out.append(UpstreamServer(parse_endpoint(text, 53), transport))
    return tuple(out)


def _primaries(raw: Any, _ctx: _Ctx, _rc: str) -> tuple[Endpoint, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise _InvalidError('must be "HOST[:PORT]" or a list of them')
    return tuple(parse_endpoint(i, 53) for i in items)


def _tsig(raw: Any, _ctx: _Ctx, _rc: str) -> TsigSpec:
    import base64
    import binascii

    if not isinstance(raw, str) or raw.count(":") < 2:
        raise _InvalidError('must be "name:algorithm:base64secret"')
    name, alg, secret = raw.split(":", 2)
    alg = alg.lower()
    if not name:
        raise _InvalidError("the key name is empty")
    if alg not in TSIG_ALGORITHMS:
        raise _InvalidError(f"unknown algorithm {alg!r} (known: {', '.join(TSIG_ALGORITHMS)})")
    try:
        if not base64.b64decode(secret, validate=True):
            raise ValueError
    except (binascii.Error, ValueError):
        raise _InvalidError("the secret is not base64") from None
    return TsigSpec(name.rstrip(".") + ".", alg, secret)


def _tsig_list(raw: Any, ctx: _Ctx, rc: str) -> tuple[TsigSpec, ...]:
    if not isinstance(raw, list):
        raise _InvalidError('must be a list of "name:algorithm:base64secret"')
    return tuple(_tsig(item, ctx, rc) for item in raw)


def _notify_targets(raw: Any, _ctx: _Ctx, _rc: str) -> tuple[Endpoint, ...]:
    if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
        raise _InvalidError('must be a list of "HOST[:PORT]"')
    return tuple(parse_endpoint(i, 53) for i in raw)


def _names(raw: Any, _ctx: _Ctx, _rc: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(i, str) and i for i in raw):
        raise _InvalidError("must be a list of key names")
    return tuple(i.rstrip(".") + "." for i in raw)


def _path(raw: Any, ctx: _Ctx, _rc: str) -> Path:
    if not isinstance(raw, str) or not raw:
        raise _InvalidError("must be a file path")
    p = Path(raw).expanduser()
    return p if p.is_absolute() else (ctx.base / p)


_CONVERTERS: dict[tuple[str, str], Any] = {
    ("server", "listen"): _endpoints,
    ("server", "allow"): _networks,
    ("server", "workers"): _int(1, 64),
    ("server", "tcp"): _bool,
    ("server", "max_udp_size"): _int(512, 4096),
    ("server", "tcp_idle_timeout"): _float(0.5, 3600),
    ("server", "tcp_max_connections"): _int(1, 1_000_000),
    ("server", "rate_limit"): _float(0, 10_000_000),
    ("server", "rate_burst"): _float(1, 100_000_000),
    ("server", "rate_limit_action"): _choice("refused", "drop", "truncate"),
    ("server", "stats_interval"): _float(0, 86_400),
    ("upstream", "servers"): _upstreams,
    ("upstream", "timeout"): _float(0.05, 30),
    ("upstream", "attempts"): _int(1, 10),
    ("upstream", "down_after"): _int(1, 1000),
    ("upstream", "down_for"): _float(0.1, 3600),
    ("cache", "max_entries"): _int(0, 100_000_000),
    ("cache", "max_bytes"): _size,
    ("cache", "min_ttl"): _int(0, 86_400),
    ("cache", "max_ttl"): _int(0, 604_800),
    ("cache", "max_negative_ttl"): _int(0, 86_400),
    ("cache", "serve_stale"): _bool,
    ("cache", "stale_max_age"): _int(0, 30 * 86_400),
    ("cache", "stale_answer_ttl"): _int(1, 3600),
    ("cache", "stale_refresh_interval"): _float(0, 3600),
    ("store", "path"): _path,
    ("store", "query_log"): _bool,
    ("store", "query_log_days"): _int(0, 3650),
    ("store", "queue_size"): _int(1, 10_000_000),
    ("store", "flush_interval"): _float(0.01, 60),
    ("web", "enabled"): _bool,
    ("web", "listen"): _endpoint,
    ("log", "level"): _choice("debug", "info", "warning", "error"),
    ("rpz", "name"): _zone_name,
    ("rpz", "file"): _path,
    ("rpz", "policy"): _rpz_policy,
    ("rpz", "log"): _bool,
    ("rpz", "max_policy_ttl"): _int(0, 604_800),
    ("rpz", "on_error"): _choice("refuse", "skip"),
    ("rpz", "recursive_only"): _bool,
    ("rpz", "nsdname_enable"): _bool,
    ("rpz", "nsip_enable"): _bool,
    ("rpz", "primary"): _primaries,
    ("rpz", "tsig"): _tsig,
    ("rpz", "on_expire"): _choice("stop", "keep"),
    ("rpz", "publish"): _bool,
    ("rpz", "publish_keys"): _names,
    ("publish", "allow"): _networks,
    ("publish", "keys"): _tsig_list,
    ("publish", "notify"): _notify_targets,
    ("publish", "history"): _int(0, 1000),
    ("policy", "min_ns_dots"): _int(0, 127),
    ("policy", "watch_interval"): _float(0, 86_400),
}


def _cross_checks(ctx: _Ctx, cfg: Config, resolver: bool = True) -> None:
    if resolver and not cfg.upstream.servers:
        raise ConfigError(
            ctx.path,
            ctx.line("upstream", None),
            "upstream.servers",
            'no upstream servers configured (e.g. servers = ["127.0.0.1:53"] or ["system"])',
        )
    if cfg.cache.min_ttl > cfg.cache.max_ttl:
        raise ctx.error("cache", "min_ttl", "is larger than cache.max_ttl")
    if cfg.server.rate_limit and cfg.server.rate_burst < 1:
        raise ctx.error("server", "rate_burst", "must be at least 1")
    known = {k.name for k in cfg.publish.keys}
    for i, z in enumerate(cfg.rpz):
        for k in z.publish_keys:
            if k not in known:
                raise ctx.error("rpz", "publish_keys", f"key {k} is not in [publish] keys", i)
