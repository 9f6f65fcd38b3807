"""Config file plumbing: locating keys in the TOML text (for file:line errors), and the
``[[table]]`` sections of the data side (feeds, datasets, DNSBLs, alerts)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from mamori.config.alerts import CONVERTERS as ALERT_CONVERTERS
from mamori.config.alerts import AlertConfig, SinkConfig, check_sink
from mamori.config.feeds import CONVERTERS as FEED_CONVERTERS
from mamori.config.feeds import DatasetConfig, DnsblConfig, FeedConfig
from mamori.config.values import InvalidValueError
from mamori.errors import ConfigError


class Ctx:
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


def tables(
    ctx: Ctx, value: Any, section: str, cls: type, converters: dict[tuple[str, str], Any]
) -> list[Any]:
    """``[[section]]`` tables as *cls* instances (keys checked and converted)."""
    if not isinstance(value, list):
        raise ConfigError(
            ctx.path, ctx.line(None, section), section, f"use [[{section}]] (one table each)"
        )
    fields = {f.name for f in dataclasses.fields(cls)}
    out = []
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            raise ConfigError(
                ctx.path, ctx.line(None, section), section, f"use [[{section}]] (one table each)"
            )
        kwargs: dict[str, Any] = {}
        for key, raw in table.items():
            if key not in fields or (section, key) not in converters:
                known = ", ".join(sorted(k for s, k in converters if s == section))
                raise ctx.error(section, key, f"unknown key (known keys: {known})", i)
            try:
                kwargs[key] = converters[(section, key)](raw, ctx, "")
            except InvalidValueError as e:
                raise ctx.error(section, key, str(e), i) from None
        out.append(cls(**kwargs))
    return out


def build_feeds(ctx: Ctx, value: Any) -> tuple[FeedConfig, ...]:
    out: list[FeedConfig] = []
    for i, feed in enumerate(tables(ctx, value, "feed", FeedConfig, FEED_CONVERTERS)):
        where = ctx.line("feed", None, i)
        if not feed.name:
            raise ConfigError(ctx.path, where, "feed.name", "missing feed name")
        if (feed.path is None) == (not feed.url):
            raise ConfigError(ctx.path, where, "feed.path", "give exactly one of path or url")
        if not feed.format:
            raise ConfigError(ctx.path, where, "feed.format", "missing format")
        if feed.columns and feed.format != "csv":
            raise ctx.error("feed", "columns", 'only for format = "csv"', i)
        if any(f.name == feed.name for f in out):
            raise ctx.error("feed", "name", f"feed {feed.name} is listed twice", i)
        out.append(feed)
    return tuple(out)


def build_datasets(ctx: Ctx, value: Any) -> tuple[DatasetConfig, ...]:
    out: list[DatasetConfig] = []
    for i, ds in enumerate(tables(ctx, value, "dataset", DatasetConfig, FEED_CONVERTERS)):
        where = ctx.line("dataset", None, i)
        if not ds.name:
            raise ConfigError(ctx.path, where, "dataset.name", "missing dataset name")
        if not ds.feeds and not ds.categories:
            raise ConfigError(
                ctx.path, where, "dataset.feeds", "list feeds = [...] and/or categories = [...]"
            )
        if any(d.name == ds.name for d in out):
            raise ctx.error("dataset", "name", f"dataset {ds.name} is listed twice", i)
        out.append(ds)
    return tuple(out)


def build_alerts(ctx: Ctx, value: Any) -> tuple[AlertConfig, ...]:
    out: list[AlertConfig] = []
    for i, rule in enumerate(tables(ctx, value, "alert", AlertConfig, ALERT_CONVERTERS)):
        if not rule.name:
            raise ConfigError(ctx.path, ctx.line("alert", None, i), "alert.name", "missing name")
        if any(r.name == rule.name for r in out):
            raise ctx.error("alert", "name", f"alert {rule.name} is listed twice", i)
        out.append(rule)
    return tuple(out)


def build_sinks(ctx: Ctx, value: Any) -> tuple[SinkConfig, ...]:
    out: list[SinkConfig] = []
    for i, sink in enumerate(tables(ctx, value, "alert_sink", SinkConfig, ALERT_CONVERTERS)):
        where = ctx.line("alert_sink", None, i)
        if not sink.name or not sink.type:
            key = "alert_sink.name" if not sink.name else "alert_sink.type"
            raise ConfigError(ctx.path, where, key, "missing (name and type are needed)")
        missing = check_sink(sink)
        if missing:
            raise ConfigError(ctx.path, where, f"alert_sink.{missing}", f"a {sink.type} needs it")
        if any(s.name == sink.name for s in out):
            raise ctx.error("alert_sink", "name", f"sink {sink.name} is listed twice", i)
        out.append(sink)
    return tuple(out)


def build_dnsbl(ctx: Ctx, value: Any) -> tuple[DnsblConfig, ...]:
    out: list[DnsblConfig] = []
    for i, bl in enumerate(tables(ctx, value, "dnsbl", DnsblConfig, FEED_CONVERTERS)):
        where = ctx.line("dnsbl", None, i)
        if not bl.zone:
            raise ConfigError(ctx.path, where, "dnsbl.zone", "missing zone name")
        if not bl.listen:
            raise ConfigError(ctx.path, where, "dnsbl.listen", "missing listen address")
        if not bl.feeds:
            raise ConfigError(ctx.path, where, "dnsbl.feeds", "list the [[feed]] names to serve")
        out.append(bl)
    return tuple(out)
