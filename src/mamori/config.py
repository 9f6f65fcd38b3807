"""Typed configuration: TOML file -> frozen dataclasses, with defaults and validation.

Every validation error names the file, the line and the key (``ConfigError``).
Relative paths in the file are resolved against the directory of the file.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamori.configalerts import AlertConfig, SinkConfig
from mamori.configfeeds import (
    DatasetConfig,
    DnsblConfig,
    FeedConfig,
    PdnsConfig,
    dataset_feeds,
)
from mamori.configkeys import CONVERTERS as _CONVERTERS
from mamori.configtables import (
    Ctx,
    build_alerts,
    build_datasets,
    build_dnsbl,
    build_feeds,
    build_sinks,
    tables,
)
from mamori.configvalues import (
    TSIG_ALGORITHMS,
    Endpoint,
    InvalidValueError,
    TsigSpec,
    UpstreamServer,
    parse_endpoint,
    read_resolv_conf,
)
from mamori.errors import ConfigError

__all__ = [
    "TSIG_ALGORITHMS",
    "Config",
    "DatasetConfig",
    "DnsblConfig",
    "Endpoint",
    "FeedConfig",
    "PdnsConfig",
    "TsigSpec",
    "UpstreamServer",
    "load",
    "loads",
    "parse_endpoint",
    "read_resolv_conf",
]

SYSTEM_RESOLV_CONF = "/etc/resolv.conf"


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
    listen: Endpoint = Endpoint("127.0.0.1", 8053)  # noqa: RUF009 (frozen dataclass)
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # who may scrape /metrics
    metrics_token: str = ""  # or a bearer token, from anywhere


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class PolicyConfig:
    """``[policy]``: settings shared by all policy zones (BIND's response-policy options)."""

    min_ns_dots: int = 1  # NSDNAME/NSIP: skip delegation points with fewer dots (TLDs)
    watch_interval: float = 5.0  # seconds between zone file change checks; 0 = off


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
    feed: str = ""  # compiled from this [[feed]] or [[dataset]] (set by the loader)
    apply: bool = True  # False: loaded only to be published (a feed with enforce = false)


@dataclass(frozen=True)
class BlockpageConfig:
    """``[blockpage]``: the warning page for names answered with the block address."""

    enabled: bool = False
    address: str = ""  # the address policy answers point to (walled garden / Local-Data A)
    listen: tuple[Endpoint, ...] = ()  # default: address:80


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
    pdns: PdnsConfig = field(default_factory=PdnsConfig)
    blockpage: BlockpageConfig = field(default_factory=BlockpageConfig)
    rpz: tuple[RpzConfig, ...] = ()
    feeds: tuple[FeedConfig, ...] = ()
    datasets: tuple[DatasetConfig, ...] = ()
    alerts: tuple[AlertConfig, ...] = ()
    alert_sinks: tuple[SinkConfig, ...] = ()
    dnsbl: tuple[DnsblConfig, ...] = ()


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "upstream": UpstreamConfig,
    "cache": CacheConfig,
    "store": StoreConfig,
    "web": WebConfig,
    "log": LogConfig,
    "policy": PolicyConfig,
    "publish": PublishConfig,
    "pdns": PdnsConfig,
    "blockpage": BlockpageConfig,
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
    ctx = Ctx(str(path), text, path.parent)
    sections: dict[str, Any] = {}
    for name, value in doc.items():
        if name == "rpz":
            sections["rpz"] = _build_rpz(ctx, value)
            continue
        if name == "feed":
            sections["feeds"] = build_feeds(ctx, value)
            continue
        if name == "dnsbl":
            sections["dnsbl"] = build_dnsbl(ctx, value)
            continue
        if name == "dataset":
            sections["datasets"] = build_datasets(ctx, value)
            continue
        if name == "alert":
            sections["alerts"] = build_alerts(ctx, value)
            continue
        if name == "alert_sink":
            sections["alert_sinks"] = build_sinks(ctx, value)
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
    feeds = tuple(
        feed_zone(f, cfg.store) for f in cfg.feeds if f.enabled and (f.enforce or f.publish)
    )
    datasets = tuple(dataset_zone(d, cfg.store) for d in cfg.datasets if d.enforce or d.publish)
    return dataclasses.replace(cfg, rpz=rpz + feeds + datasets)


def _build(ctx: Ctx, section: str, cls: type, table: dict[str, Any], resolv_conf: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ctx.error(section, key, f"unknown key (known keys: {known})")
        kwargs[key] = _convert(ctx, section, key, raw, resolv_conf)
    return cls(**kwargs)


def pdns_path(cfg: Config) -> Path:
    """The passive DNS store's file."""
    return cfg.pdns.path or cfg.store.path.parent / "pdns.sqlite"


def feed_zone(feed: FeedConfig, cfg_store: StoreConfig) -> RpzConfig:
    """The policy zone a feed is compiled into (applied after the [[rpz]] zones).

    A feed that is published but not enforced is loaded only for the publisher.
    """
    # The action is written into the rules (allow rules stay PASSTHRU): policy "given".
    return RpzConfig(
        name=f"{feed.name}.feeds.mamori.",
        file=cfg_store.path.parent / "feeds" / f"{feed.name}.rpz",
        feed=feed.name,
        apply=feed.enforce,
        publish=feed.publish,
        publish_keys=feed.publish_keys,
    )


def zone_feeds(cfg: Config) -> dict[str, FeedConfig]:
    """Policy zone name -> the [[feed]] compiled into it (categories of hits)."""
    return {feed_zone(f, cfg.store).name: f for f in cfg.feeds}


def dataset_zone(ds: DatasetConfig, cfg_store: StoreConfig) -> RpzConfig:
    """The policy zone of a dataset (the union of its feeds), after the feeds' zones."""
    return RpzConfig(
        name=f"{ds.name}.datasets.mamori.",
        file=cfg_store.path.parent / "feeds" / f"{ds.name}.dataset.rpz",
        feed=ds.name,
        apply=ds.enforce,
        publish=ds.publish,
        publish_keys=ds.publish_keys,
    )


def _build_rpz(ctx: Ctx, value: Any) -> tuple[RpzConfig, ...]:
    out: list[RpzConfig] = []
    names: set[str] = set()
    for i, rpz in enumerate(tables(ctx, value, "rpz", RpzConfig, _CONVERTERS)):
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


def _convert(ctx: Ctx, section: str, key: str, raw: Any, resolv_conf: str) -> Any:
    conv = _CONVERTERS.get((section, key))
    if conv is None:
        raise ctx.error(section, key, "unknown key")
    try:
        return conv(raw, ctx, resolv_conf)
    except InvalidValueError as e:
        raise ctx.error(section, key, str(e)) from None


def _cross_checks(ctx: Ctx, cfg: Config, resolver: bool = True) -> None:
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
    feed_names_known = {f.name for f in cfg.feeds}
    for i, ds in enumerate(cfg.datasets):
        missing = [f for f in ds.feeds if f not in feed_names_known]
        if missing:
            raise ctx.error("dataset", "feeds", f"no [[feed]] named {', '.join(missing)}", i)
        if ds.name in feed_names_known:
            raise ctx.error("dataset", "name", f"{ds.name} is also a [[feed]] name", i)
        if not dataset_feeds(ds, cfg.feeds):
            raise ctx.error("dataset", "feeds", "no enabled feed matches", i)
    for i, bl in enumerate(cfg.dnsbl):
        missing = [f for f in bl.feeds if f not in feed_names_known]
        if missing:
            raise ctx.error("dnsbl", "feeds", f"no [[feed]] named {', '.join(missing)}", i)
    if cfg.blockpage.enabled and not (cfg.blockpage.address or cfg.blockpage.listen):
        raise ctx.error("blockpage", "address", "give the block address (or listen = [...])")
    sink_names = {k.name for k in cfg.alert_sinks}
    for i, rule in enumerate(cfg.alerts):
        missing = [k for k in rule.sinks if k not in sink_names]
        if missing:
            raise ctx.error("alert", "sinks", f"no [[alert_sink]] named {', '.join(missing)}", i)
    known = {k.name for k in cfg.publish.keys}
    for i, z in enumerate(cfg.rpz):
        for k in z.publish_keys:
            if k not in known:
                raise ctx.error("rpz", "publish_keys", f"key {k} is not in [publish] keys", i)
    tables: tuple[tuple[str, tuple[FeedConfig | DatasetConfig, ...]], ...] = (
        ("feed", cfg.feeds),
        ("dataset", cfg.datasets),
    )
    for section, items in tables:
        for i, t in enumerate(items):
            for k in t.publish_keys:
                if k not in known:
                    msg = f"key {k} is not in [publish] keys"
                    raise ctx.error(section, "publish_keys", msg, i)
