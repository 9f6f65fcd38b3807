"""``mamori brand``: the brand watch on demand (look-alikes of the ``[[brand]]`` domains in
passive DNS and the query log)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from mamori import config as cfgmod
from mamori.cli.util import config_option, fail, load_config, setup_logging
from mamori.errors import MamoriError

if TYPE_CHECKING:
    from mamori.discovery.brand_store import BrandMatches


@click.group()
def brand() -> None:
    """Brand watch: look-alike domains of your brands in what was observed."""


@brand.command("report")
@config_option
@click.option("--brand", "brand_name", default=None, help="Only this [[brand]] (its name)")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one match each")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (RFC 4180) with a header row")
@click.option("--stix", "as_stix", is_flag=True, help="A STIX 2.1 bundle of indicators")
@click.option(
    "--since", default=None, help="Detected or seen on or after: epoch, ISO date, or 1w2d3h ago"
)
@click.option("--full", is_flag=True, help="Match every observed name again (not only new ones)")
@click.option("--no-scan", is_flag=True, help="List the stored matches without a pass first")
@click.option("-l", "limit", default=100000, show_default=True, help="At most this many matches")
def brand_report(
    config_path: str,
    brand_name: str | None,
    as_json: bool,
    as_csv: bool,
    as_stix: bool,
    since: str | None,
    full: bool,
    no_scan: bool,
    limit: int,
) -> None:
    """Match what passive DNS and the query log observed since the last pass against the
    [[brand]] domains, then list the matches (newest first). Exit 1 when there is none."""
    from mamori.discovery.brand_export import to_csv, to_stix
    from mamori.discovery.brand_store import BrandMatches, brand_db_path
    from mamori.pdns.formats import iso, parse_time

    cfg = load_config(config_path)
    setup_logging(cfg.log.level)
    if not cfg.brands:
        fail(MamoriError(f"{cfg.path}: no [[brand]] to watch"))
    if brand_name is not None:  # brand names ignore case
        same = [b.name for b in cfg.brands if b.name.casefold() == brand_name.casefold()]
        if not same:
            known = ", ".join(b.name for b in cfg.brands)
            fail(MamoriError(f"no [[brand]] named {brand_name!r} (known: {known})"))
        brand_name = same[0]
    try:
        after = parse_time(since) if since else None
    except ValueError as e:
        fail(MamoriError(f"--since: {e}"))
    matches = BrandMatches(brand_db_path(cfg.store.path))
    try:
        if not no_scan:
            _scan(cfg, matches, full)
        found, total = matches.search(brand_name, after, limit)
    finally:
        matches.close()
    if as_csv:
        sys.stdout.write(to_csv(found))
    elif as_stix:
        click.echo(to_stix(found))
    elif as_json:
        for sm in found:
            click.echo(json.dumps(sm.as_json(), ensure_ascii=False))
    else:
        for sm in found:
            m, s = sm.match, sm.seen
            where = ", ".join(s.addresses[:3]) if s.addresses else "does not resolve"
            click.echo(
                f"{m.brand}\t{m.name}\t{m.kind}\timitates {m.target}\tdistance {m.distance}"
                f"\tsimilarity {m.similarity}\tfirst {iso(s.time_first) if s.time_first else '-'}"
                f"\tlast {iso(s.time_last) if s.time_last else '-'}\t{where}"
                f"\tclients {len(s.clients)}"
            )
    if total > len(found):
        click.echo(f";; {len(found)} of {total} matches shown (-l)", err=True)
    if not found:
        click.echo(";; no look-alike matches", err=True)
        sys.exit(1)


def _scan(cfg: cfgmod.Config, matches: BrandMatches, full: bool) -> None:
    """One pass of the watch over the config's stores (progress on stderr)."""
    from mamori.discovery.brand_watch import brand_index, feed_names, run_pass
    from mamori.store.pdns_open import open_pdns_reader
    from mamori.store.querylog_open import brand_source

    index = brand_index(cfg.brands)
    pdns = open_pdns_reader(cfg)
    query_log = brand_source(cfg)
    try:
        result = run_pass(index, matches, pdns, query_log, full=full, feeds=feed_names(cfg))
    except MamoriError as e:  # the store cannot answer (ClickHouse away): nothing merged
        fail(e)
    finally:
        if pdns is not None:
            pdns.close()
    click.echo(
        f";; {result.names:,} names matched in {result.seconds:.1f} s:"
        f" {result.matched} look-alikes, {len(result.new)} new",
        err=True,
    )
