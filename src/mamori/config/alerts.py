"""Config of alerting: ``[[alert]]`` rules and ``[[alert_sink]]`` destinations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mamori.config.values import (
    Endpoint,
    InvalidValueError,
    boolean,
    choice,
    float_range,
    http_url,
    int_range,
    parse_endpoint,
)

CATEGORIES = ("phishing", "botnet-cc", "malware", "cryptominer", "spam", "adware", "custom")
WHEN = ("hit", "feed_stale", "upstream_down", "transfer_failed", "worker_restarts", "brand")


@dataclass(frozen=True)
class AlertConfig:
    """One ``[[alert]]`` rule."""

    name: str = ""
    when: str = "hit"
    # hit rules: which policy hits count (empty: any)
    category: tuple[str, ...] = ()
    zone: tuple[str, ...] = ()
    action: tuple[str, ...] = ()
    count: int = 1  # this many hits of one client ...
    within: float = 60.0  # ... within this many seconds
    max_age: float = 86400.0  # feed_stale: no good update for this long
    throttle: float = 3600.0  # at most one alert per rule and subject (client, feed ...) per this
    severity: str = "warning"
    sinks: tuple[str, ...] = ()  # [[alert_sink]] names; empty: all


@dataclass(frozen=True)
class SinkConfig:
    """One ``[[alert_sink]]``: webhook, syslog or email."""

    name: str = ""
    type: str = ""
    url: str = ""  # webhook
    format: str = ""  # webhook: json | slack; syslog: rfc5424 | cef
    address: Endpoint | None = None  # syslog
    protocol: str = "udp"  # syslog: udp | tcp
    smtp: Endpoint | None = None  # email
    sender: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = False
    user: str = ""
    password: str = ""
    timeout: float = 10.0


def _strings(raw: Any, _ctx: Any, _rc: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        raise InvalidValueError("must be a string or a list of strings")
    return tuple(items)


def _zones(raw: Any, ctx: Any, rc: str) -> tuple[str, ...]:
    return tuple(z.rstrip(".") + "." for z in _strings(raw, ctx, rc))


def _categories(raw: Any, ctx: Any, rc: str) -> tuple[str, ...]:
    out = _strings(raw, ctx, rc)
    bad = [c for c in out if c not in CATEGORIES]
    if bad:
        raise InvalidValueError(f"unknown category {bad[0]!r} (known: {', '.join(CATEGORIES)})")
    return out


def _text(raw: Any, _ctx: Any, _rc: str) -> str:
    if not isinstance(raw, str):
        raise InvalidValueError("must be a string")
    return raw


def _endpoint(port: int) -> Any:
    def conv(raw: Any, _ctx: Any, _rc: str) -> Endpoint:
        if not isinstance(raw, str):
            raise InvalidValueError(f'must be an address like "127.0.0.1:{port}"')
        return parse_endpoint(raw, port)

    return conv


CONVERTERS: dict[tuple[str, str], Any] = {
    ("alert", "name"): _text,
    ("alert", "when"): choice(*WHEN),
    ("alert", "category"): _categories,
    ("alert", "zone"): _zones,
    ("alert", "action"): _strings,
    ("alert", "count"): int_range(1, 1_000_000),
    ("alert", "within"): float_range(1, 30 * 86400),
    ("alert", "max_age"): float_range(60, 365 * 86400),
    ("alert", "throttle"): float_range(0, 30 * 86400),
    ("alert", "severity"): choice("info", "warning", "critical"),
    ("alert", "sinks"): _strings,
    ("alert_sink", "name"): _text,
    ("alert_sink", "type"): choice("webhook", "syslog", "email"),
    ("alert_sink", "url"): http_url,
    ("alert_sink", "format"): choice("json", "slack", "rfc5424", "cef"),
    ("alert_sink", "address"): _endpoint(514),
    ("alert_sink", "protocol"): choice("udp", "tcp"),
    ("alert_sink", "smtp"): _endpoint(25),
    ("alert_sink", "sender"): _text,
    ("alert_sink", "to"): _strings,
    ("alert_sink", "starttls"): boolean,
    ("alert_sink", "user"): _text,
    ("alert_sink", "password"): _text,
    ("alert_sink", "timeout"): float_range(0.5, 120),
}


def check_sink(sink: SinkConfig) -> str | None:
    """What a sink is missing (key, message), or None."""
    if sink.type == "webhook" and not sink.url:
        return "url"
    if sink.type == "syslog" and sink.address is None:
        return "address"
    if sink.type == "email" and (sink.smtp is None or not sink.to or not sink.sender):
        return "smtp" if sink.smtp is None else ("to" if not sink.to else "sender")
    return None
