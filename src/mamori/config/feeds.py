"""Config of the data side: ``[[feed]]``, ``[[dataset]]``, ``[[dnsbl]]``, ``[pdns]``.

The value types and their converters; ``config.py`` builds and cross-checks
the tables (it owns the file/line bookkeeping).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mamori.config.clickhouse import ClickHouseUrl, clickhouse_url, cluster_name, secret_file
from mamori.config.values import (
    Endpoint,
    InvalidValueError,
    boolean,
    choice,
    endpoints,
    feed_action,
    feed_name,
    feed_names,
    float_range,
    group_names,
    http_url,
    int_range,
    key_names,
    path,
    size,
    zone_name,
)

FORMATS = (
    "hosts",
    "domains",
    "wildcards",
    "adblock",
    "dnsmasq",
    "unbound",
    "bind",
    "csv",
    "ips",
    "rpz",
    "stix",
    "taxii",
    "misp",
)
# The columns a CSV feed's value may come from, in order of preference.
CSV_VALUE_COLUMNS = ("host", "domain", "hostname", "url", "value")
PREVIEW = "preview"  # enforce = "preview": log-only (policy "disabled")
CATEGORIES = ("phishing", "botnet-cc", "malware", "cryptominer", "spam", "adware", "custom")


@dataclass(frozen=True)
class FeedConfig:
    """One ``[[feed]]``: a threat list compiled into a policy zone (applied after [[rpz]])."""

    name: str = ""
    path: Path | None = None  # a local file (misp: a directory with manifest.json) ...
    url: str = ""  # ... or an http(s) URL (taxii: the collection URL)
    format: str = ""  # one of FORMATS
    category: str = "custom"
    refresh: int = 3600  # seconds between updates while serving
    enabled: bool = True
    # apply it as a policy zone in `mamori serve`; "preview": evaluated and logged as
    # "would block" (the zone's policy "disabled", BIND's log-only), never applied
    enforce: bool | str = True
    publish: bool = False  # serve its policy zone by AXFR/IXFR ([publish])
    publish_keys: tuple[str, ...] = ()
    action: str = "nxdomain"  # nxdomain, nodata, or cname:TARGET (walled garden)
    max_bad: float = 0.2  # refuse an update with more than this share of bad lines
    allowlist: Path | None = None  # names never listed (one per line)
    delist_after: int = 0  # an entry gone from the source stays listed this long (seconds)
    user: str = ""  # HTTP Basic credentials (TAXII servers, private feeds)
    password: str = ""
    columns: tuple[str, ...] = ()  # csv: the column names of a file without a header
    groups: tuple[str, ...] = ()  # applies only to clients of these [[group]]s; () = everyone

    @property
    def preview(self) -> bool:
        """``enforce = "preview"``: evaluated and logged as "would block", never applied."""
        return self.enforce == PREVIEW


@dataclass(frozen=True)
class DatasetConfig:
    """One ``[[dataset]]``: the union of feeds (by name or category) as one policy zone."""

    name: str = ""
    feeds: tuple[str, ...] = ()  # [[feed]] names ...
    categories: tuple[str, ...] = ()  # ... and/or every feed of these categories
    action: str = "nxdomain"
    enforce: bool | str = False  # apply it in `mamori serve` (feeds usually are); or "preview"
    publish: bool = False
    publish_keys: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # applies only to clients of these [[group]]s; () = everyone

    @property
    def preview(self) -> bool:
        """``enforce = "preview"``: evaluated and logged as "would block", never applied."""
        return self.enforce == PREVIEW


@dataclass(frozen=True)
class DnsblConfig:
    """One ``[[dnsbl]]`` zone: an authoritative DNSBL answering from feeds' entries."""

    zone: str = ""  # e.g. "bl.example.org."
    listen: tuple[Endpoint, ...] = ()
    feeds: tuple[str, ...] = ()  # [[feed]] names whose entries it lists
    kind: str = "ip"  # "ip" (reversed-octet / nibble queries) or "domain"
    lookup_url: str = ""  # TXT: "https://example.org/lookup?q={}" ({} = the query)
    ttl: int = 900
    files: tuple[Path, ...] = ()  # more entries files (set by the loader: [nod] dnsbl_zone)


@dataclass(frozen=True)
class PdnsConfig:
    """``[pdns]``: passive DNS from the resolver's own upstream answers, and its store."""

    enabled: bool = False  # record the answers mamori gets from its upstreams
    path: Path | None = None  # SQLite file; default: pdns.sqlite beside [store] path
    sensor: str = ""  # this sensor's id; default: "resolver:" + [server] node_name
    nxdomain: bool = True  # keep NXDOMAIN observations (their own table)
    flush_interval: float = 10.0  # seconds between batched writes
    queue_size: int = 100_000  # answers waiting to be parsed (beyond: dropped, counted)
    dnstap: str = ""  # "unix:/run/mamori/dnstap.sock" or "tcp:127.0.0.1:6000": a collector
    capture: str = ""  # a network interface to capture DNS from (root / CAP_NET_RAW)
    capture_port: int = 53  # the DNS port to capture (to or from)
    retention_days: int = 0  # drop tuples not seen for this long (0: keep them all)
    url: ClickHouseUrl | None = None  # clickhouse://HOST:9000/DB: the store in ClickHouse
    password_file: Path | None = None  # the ClickHouse password (first line of this file)
    cluster: str = ""  # ClickHouse cluster: local tables per shard + Distributed tables
    spool_size: int = 1 << 30  # bytes of batches kept on disk while ClickHouse is away


def _categories(raw: Any, ctx: Any, rc: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidValueError(f"must be a list of categories ({', '.join(CATEGORIES)})")
    conv = choice(*CATEGORIES)
    return tuple(conv(x, ctx, rc) for x in raw)


def _dnstap(raw: Any, _ctx: Any, _rc: str) -> str:
    if isinstance(raw, str) and (
        (raw.startswith("unix:/") and len(raw) > 6)
        or (raw.startswith("tcp:") and raw.rpartition(":")[2].isdigit())
    ):
        return raw
    raise InvalidValueError('must be "unix:/path/to/socket" or "tcp:HOST:PORT"')


def _columns(raw: Any, _ctx: Any, _rc: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
        raise InvalidValueError('must be a list of column names, e.g. ["id", "dateadded", "url"]')
    names = [x.strip().lower() for x in raw]
    if "" in names:
        raise InvalidValueError("a column name is empty")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidValueError(f"column {twice[0]!r} is named twice")
    if not any(c in names for c in CSV_VALUE_COLUMNS):
        raise InvalidValueError(
            f"no column to take the value from ({', '.join(CSV_VALUE_COLUMNS)})"
        )
    return tuple(raw)


def _enforce(raw: Any, _ctx: Any, _rc: str) -> bool | str:
    if isinstance(raw, bool) or raw == PREVIEW:
        return raw  # type: ignore[no-any-return]
    raise InvalidValueError(f'must be true, false or "preview", got {raw!r}')


def _text(raw: Any, _ctx: Any, _rc: str) -> str:
    if not isinstance(raw, str):
        raise InvalidValueError("must be a string")
    return raw


CONVERTERS: dict[tuple[str, str], Any] = {
    ("feed", "name"): feed_name,
    ("feed", "path"): path,
    ("feed", "url"): http_url,
    ("feed", "format"): choice(*FORMATS),
    ("feed", "category"): choice(*CATEGORIES),
    ("feed", "refresh"): int_range(60, 7 * 86400),
    ("feed", "enabled"): boolean,
    ("feed", "enforce"): _enforce,
    ("feed", "publish"): boolean,
    ("feed", "publish_keys"): key_names,
    ("feed", "action"): feed_action,
    ("feed", "max_bad"): float_range(0, 1),
    ("feed", "allowlist"): path,
    ("feed", "delist_after"): int_range(0, 365 * 86400),
    ("feed", "user"): _text,
    ("feed", "password"): _text,
    ("feed", "columns"): _columns,
    ("feed", "groups"): group_names,
    ("dataset", "name"): feed_name,
    ("dataset", "feeds"): feed_names,
    ("dataset", "categories"): _categories,
    ("dataset", "action"): feed_action,
    ("dataset", "enforce"): _enforce,
    ("dataset", "publish"): boolean,
    ("dataset", "publish_keys"): key_names,
    ("dataset", "groups"): group_names,
    ("pdns", "enabled"): boolean,
    ("pdns", "path"): path,
    ("pdns", "sensor"): _text,
    ("pdns", "nxdomain"): boolean,
    ("pdns", "flush_interval"): float_range(0.1, 3600),
    ("pdns", "queue_size"): int_range(1, 10_000_000),
    ("pdns", "dnstap"): _dnstap,
    ("pdns", "capture"): _text,
    ("pdns", "capture_port"): int_range(1, 65535),
    ("pdns", "retention_days"): int_range(0, 36500),
    ("pdns", "url"): clickhouse_url,
    ("pdns", "password_file"): secret_file,
    ("pdns", "cluster"): cluster_name,
    ("pdns", "spool_size"): size,
    ("dnsbl", "zone"): zone_name,
    ("dnsbl", "listen"): endpoints,
    ("dnsbl", "feeds"): feed_names,
    ("dnsbl", "kind"): choice("ip", "domain"),
    ("dnsbl", "lookup_url"): http_url,
    ("dnsbl", "ttl"): int_range(0, 86400),
}


def dataset_feeds(ds: DatasetConfig, feeds: tuple[FeedConfig, ...]) -> list[FeedConfig]:
    """The enabled feeds a dataset unites, in config order."""
    return [f for f in feeds if f.enabled and (f.name in ds.feeds or f.category in ds.categories)]
