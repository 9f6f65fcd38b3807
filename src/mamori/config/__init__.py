"""Typed configuration: TOML file -> frozen dataclasses, with defaults and validation.

``load(path)`` reads and validates a file (``load.py``); the sections are
frozen dataclasses (``sections.py``); the ``[[feed]]``, ``[[dataset]]``,
``[[dnsbl]]``, ``[pdns]`` and ``[[alert]]`` tables have modules of their own.
Every validation error names the file, the line and the key (``ConfigError``).
"""

from __future__ import annotations

from mamori.config.feeds import DatasetConfig, DnsblConfig, FeedConfig, PdnsConfig
from mamori.config.load import SYSTEM_RESOLV_CONF, load, loads
from mamori.config.sections import (
    BlockpageConfig,
    CacheConfig,
    Config,
    GroupConfig,
    LogConfig,
    PolicyConfig,
    PublishConfig,
    RpzConfig,
    RrlConfig,
    ServerConfig,
    StoreConfig,
    TlsConfig,
    UpstreamConfig,
    WebConfig,
    dataset_zone,
    feed_zone,
    pdns_path,
    zone_feeds,
)
from mamori.config.values import (
    TSIG_ALGORITHMS,
    Endpoint,
    TsigSpec,
    UpstreamServer,
    parse_endpoint,
    read_resolv_conf,
)

__all__ = [
    "SYSTEM_RESOLV_CONF",
    "TSIG_ALGORITHMS",
    "BlockpageConfig",
    "CacheConfig",
    "Config",
    "DatasetConfig",
    "DnsblConfig",
    "Endpoint",
    "FeedConfig",
    "GroupConfig",
    "LogConfig",
    "PdnsConfig",
    "PolicyConfig",
    "PublishConfig",
    "RpzConfig",
    "RrlConfig",
    "ServerConfig",
    "StoreConfig",
    "TlsConfig",
    "TsigSpec",
    "UpstreamConfig",
    "UpstreamServer",
    "WebConfig",
    "dataset_zone",
    "feed_zone",
    "load",
    "loads",
    "parse_endpoint",
    "pdns_path",
    "read_resolv_conf",
    "zone_feeds",
]
