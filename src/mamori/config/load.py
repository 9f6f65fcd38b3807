"""TOML file -> ``Config``: parsing, conversion of every key, cross-checks.

Every validation error names the file, the line and the key (``ConfigError``).
Relative paths in the file are resolved against the directory of the file.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from pathlib import Path
from typing import Any

from mamori.config import overlay as overlay_mod
from mamori.config.brands import BrandConfig, build_brands
from mamori.config.feeds import DatasetConfig, FeedConfig, PdnsConfig, dataset_feeds
from mamori.config.keys import CONVERTERS
from mamori.config.nod import NodConfig
from mamori.config.overlay import Origin, Provenance, overlay_path
from mamori.config.sections import (
    CANARY_ZONE,
    RULES_ZONE,
    BlockpageConfig,
    CacheConfig,
    Config,
    GeoConfig,
    GroupConfig,
    LogConfig,
    PolicyConfig,
    PublishConfig,
    RpzConfig,
    RrlConfig,
    RulesConfig,
    ServerConfig,
    StoreConfig,
    TlsConfig,
    UpstreamConfig,
    WebConfig,
    canary_zone,
    dataset_zone,
    feed_zone,
    nod_dnsbl,
    nod_zone,
    rules_zones,
)
from mamori.config.tables import (
    Ctx,
    build_alerts,
    build_datasets,
    build_dnsbl,
    build_feeds,
    build_sinks,
    tables,
)
from mamori.config.values import InvalidValueError
from mamori.dnsutil import textfile
from mamori.errors import ConfigError

SYSTEM_RESOLV_CONF = "/etc/resolv.conf"

log = logging.getLogger(__name__)

_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "rrl": RrlConfig,
    "upstream": UpstreamConfig,
    "cache": CacheConfig,
    "store": StoreConfig,
    "web": WebConfig,
    "log": LogConfig,
    "policy": PolicyConfig,
    "publish": PublishConfig,
    "pdns": PdnsConfig,
    "blockpage": BlockpageConfig,
    "rules": RulesConfig,
    "tls": TlsConfig,
    "nod": NodConfig,
    "geo": GeoConfig,
}


def load(path: str | Path, resolv_conf: str = SYSTEM_RESOLV_CONF, resolver: bool = True) -> Config:
    """Read and validate a config file; raise ConfigError naming file/line/key.

    The console's overlay (``<store dir>/console.toml``, ``overlay.py``) is merged;
    an overlay error is logged and the overlay ignored (``load_effective`` says so).
    """
    return load_effective(path, resolv_conf, resolver)[0]


def read_config_text(path: str | Path) -> str:
    """The config file's text (UTF-8, a byte-order mark ignored); ConfigError if not."""
    p = Path(path)
    try:
        text = textfile.decode(p.read_bytes())  # a byte-order mark is ignored
    except OSError as e:
        raise ConfigError(str(p), None, "", f"cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), None, "", f"not valid {e.encoding.upper()}") from None
    bad = textfile.first_bad_line(text)
    if bad is not None:
        raise ConfigError(str(p), bad[0], "", f"{bad[1]} (TOML files are UTF-8)")
    return text


def load_effective(
    path: str | Path,
    resolv_conf: str = SYSTEM_RESOLV_CONF,
    resolver: bool = True,
    overlay_text: str | None = None,
    strict: bool = False,
    quiet: bool = False,
) -> tuple[Config, Provenance]:
    """``load`` with the provenance of the feeds and groups (``mamori check``, the API).

    *overlay_text*: use this instead of the overlay file (the API checks an edit
    before writing it); *strict*: an overlay error is raised, not logged and ignored;
    *quiet*: an overlay error is only in ``Provenance.error`` (not logged).
    """
    p = Path(path)
    text = read_config_text(p)
    return loads_effective(text, p, resolv_conf, resolver, overlay_text, strict, quiet)


def loads(
    text: str, path: Path, resolv_conf: str = SYSTEM_RESOLV_CONF, resolver: bool = True
) -> Config:
    """Parse and validate; *resolver* False (``mamori zones serve``): no upstream needed."""
    return loads_effective(text, path, resolv_conf, resolver)[0]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def loads_effective(
    text: str,
    path: Path,
    resolv_conf: str = SYSTEM_RESOLV_CONF,
    resolver: bool = True,
    overlay_text: str | None = None,
    strict: bool = False,
    quiet: bool = False,
) -> tuple[Config, Provenance]:
    """``loads`` and the provenance of the feeds and groups (see ``load_effective``)."""
    ctx, sections = _parse(text, path, resolv_conf)
    store = sections.get("store", StoreConfig())
    opath = overlay_path(store.path.parent)
    if _same_file(opath, path):
        raise ConfigError(
            str(path), ctx.line("store", "path"), "store.path",
            f"this config file is also where the console keeps its edits ({opath.name} in"
            " [store] path's directory): name the config file otherwise, or move [store] path",
        )  # fmt: skip
    prov = Provenance(opath)
    for key, section in (("feeds", "feed"), ("groups", "group"), ("brands", "brand")):
        for i, t in enumerate(sections.get(key, ())):
            prov.origins[(section, t.name)] = Origin(str(path), ctx.line(section, None, i), False)
    try:
        if overlay_text is None:
            overlay_text = overlay_mod.read_text(opath)
        if overlay_text is not None and overlay_text.strip():
            merged = _merge_overlay(sections, overlay_text, opath, prov)
            return _finish(ctx, Config(path=path, **merged), resolver), prov
    except ConfigError as e:
        if strict:
            raise
        if not quiet:
            log.error("%s ignored (running with %s alone): %s", opath, path, e)
        prov = Provenance(opath, {k: o for k, o in prov.origins.items() if not o.overlay})
        prov.error = e
    return _finish(ctx, Config(path=path, **sections), resolver), prov


def _parse(text: str, path: Path, resolv_conf: str) -> tuple[Ctx, dict[str, Any]]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(e, text, path) from e
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
        if name == "group":
            sections["groups"] = _build_groups(ctx, value)
            continue
        if name == "alert":
            sections["alerts"] = build_alerts(ctx, value)
            continue
        if name == "alert_sink":
            sections["alert_sinks"] = build_sinks(ctx, value)
            continue
        if name == "brand":
            sections["brands"] = build_brands(ctx, value)
            continue
        if name not in _SECTIONS:
            raise ConfigError(str(path), ctx.line(name, None), name, "unknown section")
        if not isinstance(value, dict):
            raise ConfigError(str(path), ctx.line(None, name), name, "must be a table")
        sections[name] = _build(ctx, name, _SECTIONS[name], value, resolv_conf)
        if name == "geo" and "enabled" not in value:  # a [geo] table turns enrichment on
            sections[name] = dataclasses.replace(sections[name], enabled=True)
    return ctx, sections


def _syntax_error(e: tomllib.TOMLDecodeError, text: str, path: Path) -> ConfigError:
    m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
    line = int(m.group(1)) if m else None
    if line is None and "at end of document" in str(e):
        line = max(len(text.splitlines()), 1)
    msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
    return ConfigError(str(path), line, "", f"TOML syntax error: {msg}")


def _finish(ctx: Ctx, cfg: Config, resolver: bool) -> Config:
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
    for i, z in enumerate(rpz):
        if z.name == "rules.mamori." or z.name.endswith(".rules.mamori."):
            raise ctx.error("rpz", "name", f"{z.name} is managed by mamori ([rules])", i)
        if z.name == CANARY_ZONE:
            raise ctx.error("rpz", "name", f"{z.name} is mamori's ([server] doh_canary)", i)
        if cfg.nod.enabled and z.name == cfg.nod.zone:
            raise ctx.error("rpz", "name", f"{z.name} is mamori's ([nod] zone)", i)
    # The local rules first: an allow rule beats every other zone; then the DoH canary;
    # newly observed domains last (a feed that lists a name explains its block better).
    zones = rules_zones(cfg) + canary_zone(cfg) + rpz + feeds + datasets + nod_zone(cfg)
    return dataclasses.replace(cfg, rpz=zones, dnsbl=cfg.dnsbl + nod_dnsbl(cfg))


def _merge_overlay(
    sections: dict[str, Any], text: str, opath: Path, prov: Provenance
) -> dict[str, Any]:
    """The user's sections with the overlay's feeds, groups and overrides merged in."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(e, text, opath) from e
    octx = Ctx(str(opath), text, opath.parent)
    for name in doc:
        if name not in overlay_mod.TOP_KEYS:
            raise ConfigError(str(opath), octx.line(name, None), name, "unknown section")
    out = dict(sections)
    user_feeds: tuple[FeedConfig, ...] = sections.get("feeds", ())
    user_groups: tuple[GroupConfig, ...] = sections.get("groups", ())
    feeds = list(user_feeds)
    groups = list(user_groups)
    new_groups = _build_groups(octx, doc["group"]) if "group" in doc else ()
    group_names = {g.name for g in user_groups}
    ids = {d: g.name for g in user_groups for d in g.client_ids}
    for i, g in enumerate(new_groups):
        origin = Origin(str(opath), octx.line("group", None, i), True)
        if g.name in group_names:
            prov.shadowed.append(("group", g.name, origin))
            continue
        for d in g.client_ids:
            if d in ids:
                raise octx.error("group", "client_ids", f"{d} is also in group {ids[d]}", i)
        groups.append(g)
        group_names.add(g.name)
        prov.origins[("group", g.name)] = origin
    new_feeds = build_feeds(octx, doc["feed"]) if "feed" in doc else ()
    feed_names = {f.name for f in user_feeds}
    for i, f in enumerate(new_feeds):
        origin = Origin(str(opath), octx.line("feed", None, i), True)
        if f.name in feed_names:
            prov.shadowed.append(("feed", f.name, origin))
            continue
        missing = [g for g in f.groups if g not in group_names]
        if missing:
            raise octx.error("feed", "groups", f"no [[group]] named {', '.join(missing)}", i)
        feeds.append(f)
        prov.origins[("feed", f.name)] = origin
    overrides = doc.get("override", {})
    if not isinstance(overrides, dict):
        raise ConfigError(str(opath), octx.line(None, "override"), "override", "must be a table")
    for kind, entries in overrides.items():
        if kind != "feed" or not isinstance(entries, dict):
            raise ConfigError(
                str(opath), octx.line(f"override.{kind}", None), f"override.{kind}",
                "only [override.feed.NAME] tables (enabled = true|false)",
            )  # fmt: skip
        for name, table in entries.items():
            section = f"override.feed.{name}"
            if not isinstance(table, dict) or set(table) - {"enabled"}:
                raise ConfigError(
                    str(opath), octx.line(section, None), section, "only enabled = true|false"
                )
            if "enabled" not in table:
                continue
            if not isinstance(table["enabled"], bool):
                raise octx.error(section, "enabled", "must be true or false")
            at = next((i for i, f in enumerate(feeds) if f.name == name), None)
            if at is None or name not in {f.name for f in user_feeds}:
                prov.stale.append(name)
                continue
            feeds[at] = dataclasses.replace(feeds[at], enabled=table["enabled"])
            prov.overrides[name] = table["enabled"]
    out["feeds"] = tuple(feeds)
    out["groups"] = tuple(groups)
    user_brands: tuple[BrandConfig, ...] = sections.get("brands", ())
    brands = list(user_brands)
    brand_names = {b.name.casefold() for b in user_brands}  # brand names ignore case
    for i, b in enumerate(build_brands(octx, doc["brand"]) if "brand" in doc else ()):
        origin = Origin(str(opath), octx.line("brand", None, i), True)
        if b.name.casefold() in brand_names:
            prov.shadowed.append(("brand", b.name, origin))
            continue
        brands.append(b)
        prov.origins[("brand", b.name)] = origin
    out["brands"] = tuple(brands)
    return out


def _build(ctx: Ctx, section: str, cls: type, table: dict[str, Any], resolv_conf: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ctx.error(section, key, f"unknown key (known keys: {known})")
        kwargs[key] = _convert(ctx, section, key, raw, resolv_conf)
    return cls(**kwargs)


def _build_rpz(ctx: Ctx, value: Any) -> tuple[RpzConfig, ...]:
    out: list[RpzConfig] = []
    names: set[str] = set()
    for i, rpz in enumerate(tables(ctx, value, "rpz", RpzConfig, CONVERTERS)):
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


def _build_groups(ctx: Ctx, value: Any) -> tuple[GroupConfig, ...]:
    out: list[GroupConfig] = []
    ids: dict[str, str] = {}
    for i, group in enumerate(tables(ctx, value, "group", GroupConfig, CONVERTERS)):
        if not group.name:
            raise ConfigError(ctx.path, ctx.line("group", None, i), "group.name", "missing name")
        if any(g.name == group.name for g in out):
            raise ctx.error("group", "name", f"group {group.name} is listed twice", i)
        if not group.clients and not group.client_ids:
            raise ConfigError(
                ctx.path,
                ctx.line("group", None, i),
                "group.clients",
                'list its clients = ["CIDR", ...] and/or client_ids = ["device", ...]',
            )
        for d in group.client_ids:
            if d in ids:
                where = "listed twice" if ids[d] == group.name else f"also in group {ids[d]}"
                raise ctx.error("group", "client_ids", f"{d} is {where}", i)
            ids[d] = group.name
        out.append(group)
    return tuple(out)


def _convert(ctx: Ctx, section: str, key: str, raw: Any, resolv_conf: str) -> Any:
    conv = CONVERTERS.get((section, key))
    if conv is None:
        raise ctx.error(section, key, "unknown key")
    try:
        return conv(raw, ctx, resolv_conf)
    except InvalidValueError as e:
        raise ctx.error(section, key, str(e)) from None


def _cross_checks(ctx: Ctx, cfg: Config, resolver: bool = True) -> None:
    if cfg.upstream.ca_file is not None:
        import ssl

        try:
            ssl.create_default_context(cafile=str(cfg.upstream.ca_file))
        except (OSError, ssl.SSLError) as e:  # missing, unreadable, not PEM certificates
            raise ctx.error(
                "upstream",
                "ca_file",
                f"cannot load CA certificates from {cfg.upstream.ca_file}: {e}",
            ) from None
    if resolver and not cfg.upstream.servers:
        raise ConfigError(
            ctx.path,
            ctx.line("upstream", None),
            "upstream.servers",
            'no upstream servers configured (e.g. servers = ["127.0.0.1:53"] or ["system"])',
        )
    if cfg.cache.min_ttl > cfg.cache.max_ttl:
        raise ctx.error("cache", "min_ttl", "is larger than cache.max_ttl")
    if cfg.pdns.url is not None and cfg.pdns.path is not None:
        raise ctx.error("pdns", "url", "give path (SQLite) or url (ClickHouse), not both")
    if cfg.pdns.cluster and cfg.pdns.url is None:
        raise ctx.error("pdns", "cluster", "is a ClickHouse cluster: needs pdns.url")
    if cfg.store.cluster and cfg.store.url is None:
        raise ctx.error("store", "cluster", "is a ClickHouse cluster: needs store.url")
    for section, url, password_file in (
        ("pdns", cfg.pdns.url, cfg.pdns.password_file),
        ("store", cfg.store.url, cfg.store.password_file),
    ):
        if password_file is not None and url is None:
            msg = f"is the ClickHouse password: needs {section}.url"
            raise ctx.error(section, "password_file", msg)
        if url is not None and url.password and password_file is not None:
            msg = "give the password in the URL or in password_file, not both"
            raise ctx.error(section, "password_file", msg)
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
    encrypted = [k for k in ("dot", "doh", "doq") if getattr(cfg.server, k)]
    if encrypted and not (cfg.tls.cert and cfg.tls.key):
        raise ctx.error("tls", "cert", f"[server] {encrypted[0]} needs [tls] cert and key (PEM)")
    _check_listener_clash(cfg, ctx)
    _check_geo(cfg, ctx)
    if cfg.blockpage.enabled and not (cfg.blockpage.address or cfg.blockpage.listen):
        raise ctx.error("blockpage", "address", "give the block address (or listen = [...])")
    _check_nod(ctx, cfg)
    sink_names = {k.name for k in cfg.alert_sinks}
    for i, rule in enumerate(cfg.alerts):
        missing = [k for k in rule.sinks if k not in sink_names]
        if missing:
            raise ctx.error("alert", "sinks", f"no [[alert_sink]] named {', '.join(missing)}", i)
    groups = {g.name for g in cfg.groups}
    grouped: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("rpz", cfg.rpz),
        ("feed", cfg.feeds),
        ("dataset", cfg.datasets),
    )
    for section, items in grouped:
        for i, t in enumerate(items):
            missing = [g for g in t.groups if g not in groups]
            if missing:
                raise ctx.error(section, "groups", f"no [[group]] named {', '.join(missing)}", i)
    known = {k.name for k in cfg.publish.keys}
    for i, z in enumerate(cfg.rpz):
        for k in z.publish_keys:
            if k not in known:
                raise ctx.error("rpz", "publish_keys", f"key {k} is not in [publish] keys", i)
    for k in cfg.rules.publish_keys:
        if k not in known:
            raise ctx.error("rules", "publish_keys", f"key {k} is not in [publish] keys")
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


def _check_nod(ctx: Ctx, cfg: Config) -> None:
    n = cfg.nod
    if not n.enabled:
        return
    if n.action == "warn" and not (cfg.blockpage.enabled and cfg.blockpage.address):
        raise ctx.error("nod", "action", '"warn" needs [blockpage] enabled and its address')
    ours = (".rules.mamori.", ".feeds.mamori.", ".datasets.mamori.")
    if n.zone in (RULES_ZONE, CANARY_ZONE) or n.zone.endswith(ours):
        raise ctx.error("nod", "zone", f"{n.zone} is another zone of mamori's")
    if bool(n.dnsbl_zone) != bool(n.dnsbl_listen):
        given, missing = (
            ("dnsbl_zone", "dnsbl_listen") if n.dnsbl_zone else ("dnsbl_listen", "dnsbl_zone")
        )
        raise ConfigError(ctx.path, ctx.line("nod", given), f"nod.{missing}",
                          "a DNSBL needs both dnsbl_zone and dnsbl_listen")  # fmt: skip
    if n.dnsbl_zone in {bl.zone for bl in cfg.dnsbl}:
        raise ctx.error("nod", "dnsbl_zone", f"{n.dnsbl_zone} is also a [[dnsbl]] zone")


def _check_listener_clash(cfg: Config, ctx: Ctx) -> None:
    """Two of our own listeners on one address, port and protocol (``listen`` TCP with
    ``dot``/``doh``, ``listen`` UDP with ``doq``): a config error, not a bind failure."""
    s = cfg.server
    owners: dict[tuple[str, int, str], str] = {}
    kinds = [("listen", "udp"), ("listen", "tcp")] if s.tcp else [("listen", "udp")]
    kinds += [("doq", "udp"), ("dot", "tcp"), ("doh", "tcp")]
    for key, proto in kinds:
        for ep in getattr(s, key):
            other = owners.setdefault((ep.host, ep.port, proto), key)
            if other != key:
                raise ctx.error("server", key, f"{ep} ({proto}) is also in [server] {other}")


def _check_geo(cfg: Config, ctx: Ctx) -> None:
    """The ``[geo]`` databases can be opened: a MaxMind DB's metadata reads, an iptoasn
    TSV's first line has its five columns (read whole when first used)."""
    if not cfg.geo.enabled:
        return
    import gzip

    import maxminddb

    for p in cfg.geo.mmdb:
        try:
            maxminddb.open_database(str(p), maxminddb.MODE_MMAP).close()
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            msg = f"{p}: not a readable MaxMind DB file: {detail}"
            raise ctx.error("geo", "mmdb", msg) from None
    for p in cfg.geo.ip2asn:
        try:
            with p.open("rb") as f:
                head = f.read(2)
            with gzip.open(p, "rt") if head == b"\x1f\x8b" else p.open() as f:
                first = next((ln for ln in f if ln.strip() and not ln.startswith("#")), "")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ctx.error("geo", "ip2asn", f"{p}: cannot read: {detail}") from None
        if len(first.split("\t")) < 4:
            raise ctx.error(
                "geo", "ip2asn", f"{p}: not an iptoasn TSV (range_start, range_end, AS_number,"
                " country_code, AS_description; tab-separated)",
            )  # fmt: skip
