"""Command line: serve, check, web, and the zones, feeds, pdns, nod, brand, keys, users,
reports, rules, store, profile groups.

One module per command group; this module only assembles them.
"""

from __future__ import annotations

import click

from mamori import __version__
from mamori.cli.brand import brand
from mamori.cli.feeds import feeds
from mamori.cli.keys import keys, reports, users
from mamori.cli.nod import nod
from mamori.cli.pdns import pdns
from mamori.cli.preview import feeds_preview
from mamori.cli.profile import profile
from mamori.cli.rules import rules
from mamori.cli.serve import check, serve, web
from mamori.cli.store import store
from mamori.cli.zones import zones


@click.group()
@click.version_option(__version__, prog_name="mamori")
def cli() -> None:
    """mamori: DNS firewall, threat datasets and passive DNS."""


commands = (serve, web, check, zones, feeds, pdns, nod, brand, keys, reports, users, rules,
            store, profile)  # fmt: skip
for command in commands:
    cli.add_command(command)


feeds.add_command(feeds_preview)  # mamori feeds preview (its own module)


def main() -> None:
    cli()
