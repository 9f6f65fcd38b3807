"""``mamori feeds preview``: what a feed, dataset, policy zone or file would have blocked."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from mamori import config as cfgmod
from mamori.cli.util import config_option, fail, load_config, setup_logging
from mamori.control.inforce import zones_in_force
from mamori.discovery.preview import Candidate, Report, ZoneSpec

FORMAT_CHOICES = ("hosts", "domains", "wildcards", "adblock", "dnsmasq", "unbound", "bind", "csv",
                  "ips", "rpz", "stix")  # fmt: skip


@click.command("preview")
@config_option
@click.argument("target")
@click.option("--days", default=7.0, show_default=True, type=click.FloatRange(0, 3660),
              help="Replay the query log of the last N days.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES),
              help="Feed format of a FILE (default: guessed from its name and lines).")  # fmt: skip
@click.option("--top", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object (the API's shape).")
def feeds_preview(
    config_path: str, target: str, days: float, fmt: str | None, top: int, as_json: bool
) -> None:
    """What TARGET would have blocked here, before it is enforced: a [[feed]], [[dataset]]
    or [[rpz]] zone by name, or a FILE in a feed format. Replays the query log of the
    last --days against the real policy engine, TARGET placed after the zones in force
    before it; names already blocked by an earlier zone are counted apart."""
    from mamori.discovery import candidate as cand
    from mamori.discovery.preview import Options, PreviewError, QueryLog, run_preview
    from mamori.store.pdns_sqlite import PdnsSQLite
    from mamori.store.querylog_open import log_source

    cfg = load_config(config_path)
    setup_logging("warning")
    try:
        names = {f.name for f in cfg.feeds} | {d.name for d in cfg.datasets}
        zones = {z.name for z in cfg.rpz}
        path = Path(target)
        if target in names or target.rstrip(".").lower() + "." in zones:
            if fmt:
                raise PreviewError("--format is for a FILE, not a configured name")

            def build() -> Candidate:
                return cand.from_config(cfg, target)

        elif path.exists() or "/" in target:
            if not path.exists():
                raise PreviewError(f"{path}: no such file")
            if not path.is_file():
                raise PreviewError(f"{path}: not a file")

            def build() -> Candidate:
                return cand.from_file(path, fmt or "")

        else:
            raise PreviewError(f"no feed, dataset or policy zone named {target}, and no file")
        in_force = zones_in_force(cfg)

        def place(c: Candidate) -> tuple[list[ZoneSpec], list[ZoneSpec]]:
            return cand.place(cfg, c.settings.name, in_force)

        log = QueryLog(log_source(cfg))
        pdns_file = cfgmod.pdns_path(cfg)
        pdns = PdnsSQLite(pdns_file, readonly=True) if pdns_file.exists() else None
        try:
            report = run_preview(build, place, log, pdns, Options(days=days, top=top))
        finally:
            log.close()
            if pdns is not None:
                pdns.close()
    except PreviewError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1))
        return
    show(report)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t)) if t else "-"


def show(r: Report) -> None:
    """The report as text."""
    span = f"{_when(r.since)} .. {_when(r.until)}"
    click.echo(f"{r.kind} {r.candidate} (zone {r.zone}, {r.rules} rules): last {r.days:g} days"
               f" ({span}), {r.queries} queries from {r.clients_seen} clients")  # fmt: skip
    for note in r.notes:
        click.echo(f"  note: {note}")
    click.echo(f"would block: {r.blocked_queries} queries, {r.blocked_names} names,"
               f" {r.blocked_clients} clients")  # fmt: skip
    if r.earlier_zones:
        click.echo(f"evaluated after {len(r.earlier_zones)} zones in force:"
                   f" {', '.join(r.earlier_zones)}")  # fmt: skip
    else:
        click.echo("evaluated first (no zone in force before it)")
    if r.already_blocked or r.allowed_earlier:
        by = ", ".join(f"{z} {n}" for z, n in sorted(r.already_blocked_by.items()))
        click.echo(f"not counted: {r.already_blocked} queries already blocked by an earlier zone"
                   + (f" ({by})" if by else "")
                   + f"; {r.allowed_earlier} allowed by an earlier zone (PASSTHRU)")  # fmt: skip
    if r.top_names:
        click.echo("top names (queries, clients):")
        for name, q, c in r.top_names:
            click.echo(f"  {q:>8} {c:>5}  {name}")
    if r.top_clients:
        click.echo("top clients (queries):")
        for client, q in r.top_clients:
            click.echo(f"  {q:>8}  {client}")
    if r.warnings:
        click.echo(f"possible false positives ({r.warnings_total}):")
        for w in r.warnings:
            click.echo(f"  WARNING {w.name}: {w.detail} ({w.queries} queries)")
    for what in r.not_replayed:
        click.echo(f"not replayed: {what}")
    click.echo(f"({r.seconds:.2f} s)")
