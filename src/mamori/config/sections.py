"""The configuration's typed sections: frozen dataclasses with their defaults.

One class per TOML table (``[server]`` -> ``ServerConfig``, ``[[rpz]]`` ->
``RpzConfig`` ...); ``Config`` holds them all. Values are already converted and
validated (``load.py``); nothing here reads files.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from mamori.config.alerts import AlertConfig, SinkConfig
from mamori.config.brands import BrandConfig
from mamori.config.clickhouse import ClickHouseUrl
from mamori.config.feeds import DatasetConfig, DnsblConfig, FeedConfig, PdnsConfig
from mamori.config.nod import NodConfig
from mamori.config.values import Endpoint, TsigSpec, UpstreamServer


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 53), Endpoint("::1", 53))
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    workers: int = 1
    tcp: bool = True
    max_udp_size: int = 1232
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 1000
    tcp_max_per_client: int = 100  # per client address per worker; 0 = no limit
    tcp_read_timeout: float = 5.0  # a message begun must be whole within it; 0 = none
    rate_limit: float = 1000.0
    rate_burst: float = 2000.0
    rate_limit_action: str = "refused"
    stats_interval: float = 300.0
    # Encrypted DNS (the certificate in [tls]): DNS over TLS (RFC 7858), over HTTPS
    # (RFC 8484, path /dns-query), over QUIC (RFC 9250). Empty: not served.
    dot: tuple[Endpoint, ...] = ()
    doh: tuple[Endpoint, ...] = ()
    doq: tuple[Endpoint, ...] = ()
    # Clients (prefixes) whose EDNS client-MAC option (65001 raw, 65073 text/base64, as
    # dnsmasq --add-mac sends them) names the device; () = nobody: the option is spoofable
    trust_client_mac: tuple[str, ...] = ()
    # Answer Firefox's canary use-application-dns.net NXDOMAIN (its DoH stays off)
    doh_canary: bool = False
    # This node's name in a fleet: every query-log row, policy hit and alert it writes
    # carries it (the console filters by it). Default: the host name.
    node_name: str = field(default_factory=lambda: default_node_name())  # noqa: PLW0108 (defined below)


@dataclass(frozen=True)
class TlsConfig:
    """``[tls]``: the certificate of the encrypted DNS listeners (``[server] dot, doh,
    doq``), PEM files reloaded on SIGHUP and when they change (ACME renewals).
    *server_name* is the name the certificate is for (``dns.example.net``): device
    names are its first label (``phone.dns.example.net``) and DDR (RFC 9462) announces it."""

    cert: Path | None = None
    key: Path | None = None
    server_name: str = ""
    # Bounds of the encrypted listeners, each per worker and per transport (DoT, DoH, DoQ)
    handshake_timeout: float = 5.0  # seconds from accept to a finished TLS/QUIC handshake
    idle_timeout: float = 30.0  # seconds a connection may stay without a query
    read_timeout: float = 5.0  # seconds a DoT message, once begun, may take to arrive whole
    max_connections: int = 10_000  # open connections
    max_per_client: int = 100  # open connections per client address; 0 = no limit


@dataclass(frozen=True)
class RrlConfig:
    """``[rrl]``: response rate limiting over UDP (BIND's ``rate-limit``), against
    reflection and amplification from spoofed sources. Each rate is responses per
    second per client prefix; ``None`` (nxdomains, errors): responses_per_second's."""

    responses_per_second: int = 0  # identical answers (qname + qtype); 0 = off
    nxdomains_per_second: int | None = None  # NXDOMAIN per name (the zone when known)
    errors_per_second: int | None = None  # other rcodes (SERVFAIL, REFUSED ...) per prefix
    window: int = 15  # seconds: debt is capped at window x rate (the time to recover)
    slip: int = 2  # every Nth limited answer sent as TC=1 (0 never, 1 always)
    ipv4_prefix_length: int = 24
    ipv6_prefix_length: int = 56
    exempt: tuple[str, ...] = ()  # client prefixes never limited
    log_only: bool = False  # count and log, answer anyway

    @property
    def nxdomain_rate(self) -> int:
        n = self.nxdomains_per_second
        return self.responses_per_second if n is None else n

    @property
    def error_rate(self) -> int:
        n = self.errors_per_second
        return self.responses_per_second if n is None else n

    @property
    def enabled(self) -> bool:
        return bool(self.responses_per_second or self.nxdomain_rate or self.error_rate)


@dataclass(frozen=True)
class UpstreamConfig:
    servers: tuple[UpstreamServer, ...] = ()
    timeout: float = 1.5
    attempts: int = 3
    down_after: int = 3
    down_for: float = 10.0
    # PEM CA bundle that tls:// and https:// upstreams must chain to (None: system CAs)
    ca_file: Path | None = None


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
    client_addresses: str = "full"  # full, truncate (/24, /48) or none (store/privacy.py)
    # The query, hit and alert logs in ClickHouse (a fleet's one place); None: SQLite (path)
    url: ClickHouseUrl | None = None
    password_file: Path | None = None  # the ClickHouse password (first line of this file)
    spool_size: int = 1 << 30  # bytes of batches kept on disk while ClickHouse is away
    cluster: str = ""  # ClickHouse cluster: local tables per shard + Distributed tables


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = False
    listen: Endpoint = Endpoint("127.0.0.1", 8053)  # noqa: RUF009 (frozen dataclass)
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # who may scrape /metrics
    metrics_token: str = ""  # or a bearer token, from anywhere
    # Throttling (web/security.py): failures within login_failure_window seconds, then
    # HTTP 429 for login_lockout seconds; 0 = no limit.
    login_failures_per_address: int = 10  # per IPv4 address / IPv6 /64
    login_failures_per_user: int = 5  # per user name, from any address
    api_key_failures_per_address: int = 20  # requests refused 401 that carried a key
    login_failure_window: float = 60.0
    login_lockout: float = 300.0
    # Console sessions: ended after this long without a request / after this long at all
    session_idle_timeout: float = 7200.0
    session_max_age: float = 43200.0


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
    groups: tuple[str, ...] = ()  # applies only to clients of these [[group]]s; () = everyone
    managed: bool = False  # written by mamori (the local rules): no file yet = empty


@dataclass(frozen=True)
class GroupConfig:
    """One ``[[group]]``: a set of clients (BIND view, Unbound access-control-tag, AdGuard
    Home persistent client). Policy zones, feeds and datasets with ``groups = [...]``
    apply only to clients in one of those groups; a client may be in several groups."""

    name: str = ""
    clients: tuple[str, ...] = ()  # IP prefixes (normalised: "192.168.1.0/24", "::1/128")
    client_ids: tuple[str, ...] = ()  # device names (encrypted DNS; lowercased)
    query_log_days: int = -1  # retention of this group's query log rows; -1: [store]'s


@dataclass(frozen=True)
class BlockpageConfig:
    """``[blockpage]``: the warning page for names answered with the block address."""

    enabled: bool = False
    address: str = ""  # the address policy answers point to (walled garden / Local-Data A)
    listen: tuple[Endpoint, ...] = ()  # default: address:80


@dataclass(frozen=True)
class RulesConfig:
    """``[rules]``: the local rules (console, REST API, ``mamori rules``), kept in the
    managed policy zones ``rules.mamori.`` and ``GROUP.rules.mamori.``, first in order."""

    enabled: bool = True
    publish: bool = False  # serve the rules zones by AXFR/IXFR like any [[rpz]] publish
    publish_keys: tuple[str, ...] = ()  # TSIG key names ([publish] keys) allowed; () = any


@dataclass(frozen=True)
class PublishConfig:
    """``[publish]``: serving policy zones (``[[rpz]] publish = true``) to secondaries."""

    allow: tuple[str, ...] = ()  # networks that may transfer without TSIG
    keys: tuple[TsigSpec, ...] = ()  # TSIG keys secondaries may sign with
    notify: tuple[Endpoint, ...] = ()  # secondaries to NOTIFY when a zone changes
    history: int = 20  # IXFR: versions kept per zone


@dataclass(frozen=True)
class GeoConfig:
    """``[geo]``: the AS and country of addresses (``discovery.geo``), from offline
    databases the user supplies. On when the config has a ``[geo]`` table."""

    enabled: bool = False  # set by the presence of [geo] (enabled = false turns it off)
    mmdb: tuple[Path, ...] = ()  # MaxMind DB files: GeoLite2-ASN/-Country/-City, DB-IP, IPinfo
    ip2asn: tuple[Path, ...] = ()  # iptoasn TSV files (ip2asn-combined.tsv[.gz])
    builtin_country: bool = True  # countries from the bundled RIR data (iptocc) as fallback


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    rrl: RrlConfig = field(default_factory=RrlConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    web: WebConfig = field(default_factory=WebConfig)
    log: LogConfig = field(default_factory=LogConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    pdns: PdnsConfig = field(default_factory=PdnsConfig)
    blockpage: BlockpageConfig = field(default_factory=BlockpageConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    geo: GeoConfig = field(default_factory=GeoConfig)
    rpz: tuple[RpzConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = ()
    feeds: tuple[FeedConfig, ...] = ()
    datasets: tuple[DatasetConfig, ...] = ()
    alerts: tuple[AlertConfig, ...] = ()
    alert_sinks: tuple[SinkConfig, ...] = ()
    dnsbl: tuple[DnsblConfig, ...] = ()
    nod: NodConfig = field(default_factory=NodConfig)
    brands: tuple[BrandConfig, ...] = ()


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
        # enforce = "preview": applied as a log-only zone (what it would block is logged)
        policy="disabled" if feed.preview else "given",
        feed=feed.name,
        apply=bool(feed.enforce),
        publish=feed.publish,
        publish_keys=feed.publish_keys,
        groups=feed.groups,
    )


def zone_feeds(cfg: Config) -> dict[str, FeedConfig]:
    """Policy zone name -> the [[feed]] compiled into it (categories of hits)."""
    return {feed_zone(f, cfg.store).name: f for f in cfg.feeds}


RULES_ZONE = "rules.mamori."
CANARY_ZONE = "doh-canary.mamori."


def canary_zone(cfg: Config) -> tuple[RpzConfig, ...]:
    """The built-in zone answering Firefox's DoH canary ``use-application-dns.net``
    NXDOMAIN, when ``[server] doh_canary = true`` (a file shipped in the package)."""
    if not cfg.server.doh_canary:
        return ()
    shipped = Path(__file__).resolve().parents[1] / "data" / "doh-canary.rpz"
    return (RpzConfig(name=CANARY_ZONE, file=shipped),)


def rules_zones(cfg: Config) -> tuple[RpzConfig, ...]:
    """The managed zones of the local rules (none when ``[rules] enabled = false``):
    ``rules.mamori.`` (everyone's), then ``GROUP.rules.mamori.`` for each [[group]]."""
    if not cfg.rules.enabled:
        return ()
    directory = cfg.store.path.parent / "rules"
    r = cfg.rules

    def zone(name: str, groups: tuple[str, ...] = ()) -> RpzConfig:
        return RpzConfig(name=name, file=directory / f"{name}zone", publish=r.publish,
                         publish_keys=r.publish_keys, groups=groups, managed=True)  # fmt: skip

    zones = [zone(RULES_ZONE)]
    zones += [zone(f"{g.name}.{RULES_ZONE}", (g.name,)) for g in cfg.groups]
    return tuple(zones)


def dataset_zone(ds: DatasetConfig, cfg_store: StoreConfig) -> RpzConfig:
    """The policy zone of a dataset (the union of its feeds), after the feeds' zones."""
    return RpzConfig(
        name=f"{ds.name}.datasets.mamori.",
        file=cfg_store.path.parent / "feeds" / f"{ds.name}.dataset.rpz",
        policy="disabled" if ds.preview else "given",
        feed=ds.name,
        apply=bool(ds.enforce),
        publish=ds.publish,
        publish_keys=ds.publish_keys,
        groups=ds.groups,
    )


def nod_dir(cfg_store: StoreConfig) -> Path:
    """Where newly observed domains keep their zone, DNSBL entries and state."""
    return cfg_store.path.parent / "nod"


def nod_zone_file(cfg: Config) -> Path:
    """The NOD policy zone's file, named after ``[nod] zone`` (another zone name is
    another file: a zone renamed by a reload never loads the old zone's file)."""
    return nod_dir(cfg.store) / f"{cfg.nod.zone}rpz"


def nod_zone(cfg: Config) -> tuple[RpzConfig, ...]:
    """The managed policy zone of newly observed domains (``[nod]``), applied after every
    other zone: ``log`` is policy ``disabled`` (hits logged, nothing applied)."""
    n = cfg.nod
    if not n.enabled:
        return ()
    policy = "disabled" if n.action == "log" else "given"
    return (RpzConfig(name=n.zone, file=nod_zone_file(cfg), policy=policy, managed=True),)


def nod_dnsbl(cfg: Config) -> tuple[DnsblConfig, ...]:
    """The DNSBL of newly observed domains (``[nod] dnsbl_zone``), a name list answering
    ``127.0.2.N`` by age (discovery/nod.py)."""
    n = cfg.nod
    if not (n.enabled and n.dnsbl_zone):
        return ()
    entries = nod_dir(cfg.store) / "nod.entries"
    return (DnsblConfig(zone=n.dnsbl_zone, listen=n.dnsbl_listen, kind="domain",
                        ttl=n.dnsbl_ttl, files=(entries,)),)  # fmt: skip


NODE_NAME_MAX = 64  # characters of [server] node_name


def default_node_name() -> str:
    """The host name (``socket.gethostname()``), cut to ``NODE_NAME_MAX`` characters."""
    return (socket.gethostname() or "localhost")[:NODE_NAME_MAX]
