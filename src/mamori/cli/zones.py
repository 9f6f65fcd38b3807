"""``mamori zones``: serve (primary only), status, hits."""

from __future__ import annotations

import click

from mamori import config as config_mod
from mamori.cli.util import config_option, fail, load_config, setup_logging
from mamori.errors import MamoriError


@click.group()
def zones() -> None:
    """Policy zones: transfer status, hit counters."""


@zones.command("serve")
@config_option
def zones_serve(config_path: str) -> None:
    """Run only the primary: serve the zones with publish = true by AXFR/IXFR (no resolver).

    Listens on [server] listen; SIGHUP reloads, zone file changes are picked up.
    """
    from mamori.control import service

    try:
        cfg = config_mod.load(config_path, resolver=False)
    except MamoriError as e:
        fail(e)
    setup_logging(cfg.log.level)
    if not any(z.publish for z in cfg.rpz):
        fail(MamoriError(f"{config_path}: no [[rpz]] zone has publish = true"))
    try:
        service.run_primary(cfg)
    except MamoriError as e:
        fail(e)


@zones.command("status")
@config_option
def zones_status(config_path: str) -> None:
    """Per zone: source, serial, rules, last transfer and result, next refresh."""
    import json
    import time

    from mamori.xfr.secondary import status_path

    try:
        cfg = config_mod.load(config_path, resolver=False)
    except MamoriError as e:
        fail(e)

    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z" if ts else "-"

    for rpz in cfg.rpz:
        assert rpz.file is not None
        if rpz.publish:
            pub_file = cfg.store.path.parent / "zones" / f"{rpz.name.rstrip('.')}.published.json"
            published = json.loads(pub_file.read_text()) if pub_file.exists() else None
            serial = f"serial {published['serial']}" if published else "not published yet"
            click.echo(f"{rpz.name}  published by AXFR/IXFR: {serial}")
        if not rpz.primary:
            click.echo(f"{rpz.name}  file {rpz.file}")
            continue
        click.echo(f"{rpz.name}  secondary of {', '.join(str(p) for p in rpz.primary)}")
        sp = status_path(rpz.file)
        if not sp.exists():
            click.echo("  no status yet (mamori serve has not run with this zone)")
            continue
        st = json.loads(sp.read_text())
        state = "EXPIRED" if st["expired"] else ("loaded" if st["loaded"] else "not loaded")
        click.echo(f"  state:         {state}, serial {st['serial']}, {st['rules']} rules")
        click.echo(f"  last transfer: {when(st['last_transfer'])}")
        click.echo(f"  last check:    {when(st['last_check'])}: {st['last_result']}")
        click.echo(f"  next refresh:  {when(st['next_refresh'])}")


@zones.command("hits")
@config_option
def zones_hits(config_path: str) -> None:
    """Per-zone policy hit counters from the store (zone, trigger, action, hits)."""
    import time

    from mamori.store.querylog_open import open_query_reader

    cfg = load_config(config_path)
    try:
        reader = open_query_reader(cfg)  # [store] url: every node's counters
        try:
            rows = reader.policy_hits()
        finally:
            reader.close()
    except MamoriError as e:
        fail(e)
    if not rows:
        click.echo("no policy hits recorded")
        return
    click.echo(f"{'ZONE':<28} {'TRIGGER':<10} {'ACTION':<11} {'HITS':>10}  LAST HIT (UTC)")
    for zone, trigger, action, hits, _first, last in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(last))
        click.echo(f"{zone:<28} {trigger:<10} {action:<11} {hits:>10}  {when}")
