"""``mamori serve`` (the firewall), ``mamori web`` (the APIs alone), ``mamori check``."""

from __future__ import annotations

import faulthandler
import logging
import signal
from typing import TYPE_CHECKING, Any

import click

from mamori import config as config_mod
from mamori.cli.util import config_option, fail, load_config, setup_logging
from mamori.errors import MamoriError

if TYPE_CHECKING:
    from mamori.pdns.sensors.resolver_tap import TapWriter

log = logging.getLogger("mamori")


@click.command()
@config_option
def serve(config_path: str) -> None:
    """Run the DNS firewall in the foreground (SIGTERM stops, SIGHUP reloads)."""
    from mamori.control import service
    from mamori.control.view import Runtime
    from mamori.store.querylog_open import open_query_store

    # A fatal signal (SIGSEGV, or SIGBUS from a compiled policy file truncated under its
    # mapping) leaves a traceback on stderr; a SIGHUP before the start completes is ignored
    # (its handler, a reload, is installed once the event loop runs).
    faulthandler.enable()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    cfg = load_config(config_path, resolver=True)  # the resolver needs [upstream]
    setup_logging(cfg.log.level)
    _rules_zones(cfg)
    runtime = Runtime()
    # First, before any thread exists: the process that forks the workers.
    zygote = service.fork_worker_factory(cfg)
    parts = service.Parts(cfg, runtime)
    parts.zygote = zygote
    try:
        service.bind(cfg, parts)
        parts.web_factory = _web_factory(cfg, runtime)  # binds now, builds the apps later
        parts.store = open_query_store(cfg)
    except MamoriError as e:
        if zygote is not None:
            zygote.close()
        fail(e)
    tap_writer = _pdns_tap(cfg, parts)
    if cfg.nod.enabled:
        parts.nod_store = _nod_store(cfg)
        if not (cfg.pdns.enabled or cfg.pdns.dnstap or cfg.pdns.capture):
            log.warning("[nod] reads passive DNS, but this server records none ([pdns]"
                        " enabled = false): only ingested captures make domains new")  # fmt: skip
    children = _pdns_children(cfg)
    alerts = _alerts(cfg, runtime)
    watch = _brand_watch(cfg, runtime, alerts)
    try:
        service.run(parts)
    except MamoriError as e:
        fail(e)
    finally:
        watch.stop()
        if alerts is not None:
            alerts.stop()
        if children is not None:
            children.stop()
        if tap_writer is not None:
            tap_writer.stop()
            tap_writer.store.close()
            if parts.tap is not None and parts.tap.dropped:
                log.warning("passive DNS: %d answers dropped (queue full)", parts.tap.dropped)
        if parts.store is not None:
            parts.store.close()


def _rules_zones(cfg: config_mod.Config) -> None:
    """The local rules' zones rebuilt from their table when missing or stale."""
    import sqlite3

    from mamori.store.rules import ensure_zones

    try:
        ensure_zones(cfg)
    except (OSError, sqlite3.Error) as e:
        log.error("local rules: cannot rebuild the rules zones: %s", e)


def _web_factory(cfg: config_mod.Config, runtime: Any) -> Any:
    """Bind the console's and the block page's listeners now (a taken port fails at once);
    return what builds their servers once the DNS side answers (the web imports are slow)."""
    from mamori.web.listen import bind_http, blockpage_endpoints

    web_sock = bind_http(cfg.web.listen) if cfg.web.enabled else None
    bp = cfg.blockpage
    bp_socks = [bind_http(ep) for ep in blockpage_endpoints(bp.address, bp.listen)] if (
        bp.enabled
    ) else []  # fmt: skip

    def build() -> list[Any]:
        from mamori.web.server import blockpage_servers, make_server

        servers = [make_server(cfg, True, runtime, web_sock)] if web_sock is not None else []
        if web_sock is not None:
            log.info("console: %s", console_url(web_sock))
        return servers + (blockpage_servers(cfg, runtime, bp_socks) if bp_socks else [])

    return build


def console_url(sock: Any) -> str:
    """``http://HOST:PORT/`` of a bound listening socket (IPv6 in brackets); an
    unspecified address (``0.0.0.0``, ``::``) says it stands for every address."""
    import ipaddress

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    every = " (every address of this host)" if ipaddress.ip_address(host).is_unspecified else ""
    return f"http://{shown}:{port}/{every}"


def _web_server(cfg: config_mod.Config, embedded: bool = False, runtime: Any = None) -> Any:
    """The HTTP APIs on [web] listen (*embedded*: inside the DNS process's event loop)."""
    from mamori.web.server import make_server

    return make_server(cfg, embedded, runtime)


@click.command()
@config_option
def web(config_path: str) -> None:
    """Run the HTTP APIs alone (foreground), on [web] listen, over the config's stores."""
    import asyncio
    import contextlib

    cfg = load_config(config_path)
    setup_logging(cfg.log.level)
    server = _web_server(cfg)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve())


def _alerts(cfg: config_mod.Config, runtime: Any) -> Any:
    """The alert rules' thread, fed by the query-log writer's policy hits (always
    started: a SIGHUP may add the first ``[[alert]]``)."""
    from mamori.alerts.engine import AlertEngine

    engine = AlertEngine(cfg, runtime)
    runtime.hit_listeners.append(engine.on_hits)
    runtime.crash_listeners.append(engine.on_crash_loop)
    engine.start()
    return engine


class _PdnsFile:
    """Passive DNS for the brand watch: the store once it exists (``mamori pdns ingest``
    or the resolver's tap may create the SQLite file after the start)."""

    def __init__(self, cfg: config_mod.Config) -> None:
        self.cfg = cfg

    def export_records(self) -> Any:
        from typing import cast

        from mamori.store.pdns_base import PdnsPortable
        from mamori.store.pdns_open import open_pdns_reader

        store = open_pdns_reader(self.cfg)
        if store is None:
            return
        try:
            yield from cast(PdnsPortable, store).export_records()  # both backends have it
        finally:
            store.close()

    def export_nxdomain(self) -> Any:
        from typing import cast

        from mamori.store.pdns_base import PdnsPortable
        from mamori.store.pdns_open import open_pdns_reader

        store = open_pdns_reader(self.cfg)
        if store is None:
            return
        try:
            yield from cast(PdnsPortable, store).export_nxdomain()
        finally:
            store.close()


def _brand_watch(cfg: config_mod.Config, runtime: Any, alerts: Any) -> Any:
    """The brand watch's thread: a pass every 10 minutes over passive DNS and the query
    log with the [[brand]]s in force; new matches go to the alert rules."""
    from mamori.discovery.brand_store import BrandMatches, brand_db_path
    from mamori.discovery.brand_watch import BrandWatcher
    from mamori.store.querylog_open import log_source

    watch = BrandWatcher(
        lambda: runtime.config_source() or cfg,
        _PdnsFile(cfg),
        BrandMatches(brand_db_path(cfg.store.path)),
        log_source(cfg),
    )
    if alerts is not None:
        watch.listeners.append(alerts.on_brand)
    runtime.brand_wake = watch.wake
    watch.start()
    return watch


def _pdns_children(cfg: config_mod.Config) -> Any:
    """[pdns] dnstap / capture: collectors in child processes (their parsing stays off
    the DNS loop), restarted with back-off when they die (control/children.py)."""
    import sys

    from mamori.control.children import Child, ChildSupervisor

    children = []
    for wanted, command in ((cfg.pdns.dnstap, "collect"), (cfg.pdns.capture, "capture")):
        if wanted:
            argv = [sys.executable, "-m", "mamori", "pdns", command, "--config", str(cfg.path)]
            children.append(Child(f"pdns {command}", argv))
    if not children:
        return None
    supervisor = ChildSupervisor(children)
    supervisor.start()
    return supervisor


def _pdns_tap(cfg: config_mod.Config, parts: Any) -> TapWriter | None:
    """The resolver's passive DNS sensor, when [pdns] enabled: the answers of every
    data plane (in process or from the workers) go through ``parts.tap``."""
    if not cfg.pdns.enabled:
        return None
    from mamori.pdns.sensors.resolver_tap import TapWriter
    from mamori.resolver.events import AnswerTap
    from mamori.store.pdns_open import describe, note_path, open_pdns

    parts.tap = tap = AnswerTap(cfg.pdns.queue_size)
    # by default the node's name: a fleet's sensors told apart ([server] node_name)
    sensor = cfg.pdns.sensor or f"resolver:{cfg.server.node_name}"
    store = open_pdns(cfg, sensor=sensor)  # its runs are this sensor's
    writer = TapWriter(
        tap,
        store,
        sensor,
        cfg.pdns.flush_interval,
        cfg.pdns.nxdomain,
        cfg.pdns.retention_days,
        note=note_path(cfg),
    )
    writer.begin()  # what the last run lost, if it crashed
    writer.start()
    spool = getattr(store, "spool", None)  # ClickHouse: batches kept on disk (/metrics)
    if spool is not None:
        parts.runtime.spools["pdns"] = spool
    log.info("passive DNS: upstream answers recorded in %s (sensor %s)", describe(cfg), sensor)
    return writer


def _nod_store(cfg: config_mod.Config) -> Any:
    """What opens the passive DNS store newly observed domains read ([nod])."""
    from mamori.store.pdns_open import open_pdns

    return lambda: open_pdns(cfg, writer=False)


@click.command()
@config_option
def check(config_path: str) -> None:
    """Validate a configuration file; exit non-zero naming file, line and key.

    ``[upstream]`` is not required: a config that only publishes zones
    (``mamori zones serve``) or updates feeds needs none; the output says that
    ``mamori serve`` would refuse it.
    """
    from mamori.config.load import load_effective
    from mamori.control.zoneload import load_policy
    from mamori.resolver.encrypted import load_certs

    try:  # an error in the console's overlay is reported, not fatal (as in mamori serve)
        cfg, prov = load_effective(config_path, resolver=False, quiet=True)
    except MamoriError as e:
        fail(e)
    try:  # the zones first: an error is reported alone, never after "OK"
        policy, loaded = load_policy(cfg.rpz)
        load_certs(cfg)  # the [tls] certificate of dot/doh/doq, when one is set
    except MamoriError as e:
        fail(e)
    pdns_lines: list[str] = []
    errors: list[MamoriError] = []  # both stores are checked: every failing URL is named
    if cfg.pdns.url is not None:  # ClickHouse: connect, say the version and the schema
        from mamori.store import pdns_open

        try:
            pdns_lines = pdns_open.check(cfg)
        except MamoriError as e:
            errors.append(MamoriError(f"[pdns] url {cfg.pdns.url}: {e}"))
    store_lines = [f"store:     {cfg.store.path} (node {cfg.server.node_name})"]
    if cfg.store.url is not None:  # the query log in ClickHouse: version, schema
        from mamori.store import querylog_open

        try:
            store_lines = querylog_open.check(cfg)
        except MamoriError as e:
            errors.append(MamoriError(f"[store] url {cfg.store.url}: {e}"))
    for err in errors[:-1]:
        click.echo(f"mamori: error: {err}", err=True)
    if errors:
        fail(errors[-1])
    s = cfg.server
    click.echo(f"{config_path}: OK")
    click.echo(f"  listen:    {', '.join(str(e) for e in s.listen)} (udp{'+tcp' if s.tcp else ''})")
    for what, eps in (("dot", s.dot), ("doh", s.doh), ("doq", s.doq)):
        if eps:
            click.echo(
                f"  {what}:       {', '.join(str(e) for e in eps)} (certificate {cfg.tls.cert})"
            )
    click.echo(f"  allow:     {', '.join(s.allow)}")
    click.echo(f"  workers:   {s.workers}")
    if cfg.upstream.servers:
        click.echo(f"  upstreams: {', '.join(str(u) for u in cfg.upstream.servers)}")
    else:
        click.echo(
            "  upstreams: none: `mamori serve` needs [upstream] servers;"
            " `mamori zones serve` and `mamori feeds update` run without"
        )
    for line in [*store_lines, *pdns_lines]:
        click.echo(f"  {line}")
    settings = policy.settings if policy is not None else []
    applied = {st.name: st.policy for st in settings}
    for z in loaded.values():
        how = f"policy {applied[z.name]}" if z.name in applied else "not applied"
        skipped = f", {len(z.skipped)} bad records skipped" if z.skipped else ""
        rpz = next(r for r in cfg.rpz if r.name == z.name)
        source = f", from {', '.join(str(p) for p in rpz.primary)}" if rpz.primary else ""
        if rpz.primary and z.soa is None:
            source += " (not transferred yet)"
        if rpz.feed and z.soa is None:
            source += " (not fetched yet: mamori feeds update)"
        published = ", published" if rpz.publish else ""
        click.echo(
            f"  rpz:       {z.name} serial {z.serial}, {z.rule_count} rules, {how}"
            f"{skipped}{source}{published}"
        )
    _echo_settings(cfg, prov)


def _echo_settings(cfg: config_mod.Config, prov: Any) -> None:
    """The effective feeds, groups and brands and where each came from (the user's TOML
    file:line, or the console's overlay file)."""
    for f in cfg.feeds:
        state = "" if f.enabled else " (disabled)"
        if f.name in prov.overrides:
            state += f" ({'enabled' if prov.overrides[f.name] else 'disabled'} from the console)"
        origin = prov.origins.get(("feed", f.name), "")
        click.echo(f"  feed:      {f.name} {f.format} {f.category}{state}, from {origin}")
    for g in cfg.groups:
        members = ", ".join((*g.clients, *g.client_ids)) or "no clients"
        origin = prov.origins.get(("group", g.name), "")
        click.echo(f"  group:     {g.name}: {members}, from {origin}")
    for b in cfg.brands:
        origin = prov.origins.get(("brand", b.name), "")
        click.echo(f"  brand:     {b.name}: {', '.join(b.domains)}, from {origin}")
    for kind, name, origin in prov.shadowed:
        click.echo(
            f"  shadowed:  {kind} {name} of {origin} is not used:"
            f" {prov.origins[(kind, name)]} defines it"
        )
    for name in prov.stale:
        click.echo(f"  ignored:   {prov.path}: override of feed {name}, which is not in the file")
    if prov.error is not None:
        click.echo(f"  overlay:   IGNORED (mamori serve runs without it): {prov.error}")
    elif prov.path.exists():
        click.echo(f"  overlay:   {prov.path} (edits from the console and the REST API)")
