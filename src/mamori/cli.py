"""Command line: ``mamori serve`` and ``mamori check`` (more groups join later)."""

from __future__ import annotations

import logging
import sys

import click

from mamori import __version__
from mamori import config as config_mod
from mamori.errors import MamoriError

log = logging.getLogger("mamori")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(e: Exception) -> None:
    click.echo(f"mamori: error: {e}", err=True)
    sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="mamori")
def cli() -> None:
    """mamori: DNS firewall, threat datasets and passive DNS."""


@cli.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="TOML configuration file.",
)
def serve(config_path: str) -> None:
    """Run the DNS firewall in the foreground (SIGTERM stops, SIGHUP reloads)."""
    from mamori.resolver import service
    from mamori.store.sqlite import SQLiteStore

    try:
        cfg = config_mod.load(config_path)
    except MamoriError as e:
        _fail(e)
        return
    _setup_logging(cfg.log.level)
    if cfg.web.enabled:
        log.warning("[web] enabled: the web console is not part of this version yet; ignored")
    try:
        store = SQLiteStore(cfg.store.path)
    except MamoriError as e:
        _fail(e)
        return
    try:
        service.run(cfg, store)
    except MamoriError as e:
        _fail(e)
    finally:
        store.close()


@cli.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="TOML configuration file.",
)
def check(config_path: str) -> None:
    """Validate a configuration file; exit non-zero naming file, line and key."""
    try:
        cfg = config_mod.load(config_path)
    except MamoriError as e:
        _fail(e)
        return
    s = cfg.server
    click.echo(f"{config_path}: OK")
    click.echo(f"  listen:    {', '.join(str(e) for e in s.listen)} (udp{'+tcp' if s.tcp else ''})")
    click.echo(f"  allow:     {', '.join(s.allow)}")
    click.echo(f"  upstreams: {', '.join(str(u) for u in cfg.upstream.servers)}")
    click.echo(f"  store:     {cfg.store.path}")


def main() -> None:
    cli()
