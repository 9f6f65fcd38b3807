"""``mamori nod``: newly observed domains (``[nod]``, discovery/nod.py)."""

from __future__ import annotations

import json
import time

import click

from mamori.cli.util import config_option, fail, load_config
from mamori.errors import MamoriError


@click.group()
def nod() -> None:
    """Newly observed domains: registrable domains first seen in passive DNS lately."""


def _iso(ts: int | None) -> str | None:
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@nod.command("list")
@config_option
@click.option(
    "--since", "since_text", default="",
    help="Only domains first seen on or after: epoch, ISO date/time, or relative (6h)",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON document")
def nod_list(config_path: str, since_text: str, as_json: bool) -> None:
    """The registrable domains first seen within [nod] window (none while warming up),
    from the passive DNS store, earliest first."""
    from mamori.discovery.nod import find_new
    from mamori.pdns.formats import parse_time
    from mamori.store.pdns_open import describe, open_pdns_reader

    cfg = load_config(config_path)
    try:
        since = parse_time(since_text) if since_text else None
    except ValueError as e:
        fail(MamoriError(f"--since: {e}"))
    store = open_pdns_reader(cfg)
    if store is None:
        fail(
            MamoriError(
                f"{describe(cfg)}: no passive DNS store yet (mamori pdns ingest, or [pdns])"
            )
        )
    try:
        view = find_new(store, cfg.nod.window, cfg.nod.warmup_seconds)
    except MamoriError as e:  # the store cannot answer (ClickHouse away)
        fail(e)
    finally:
        store.close()
    domains = [d for d in view.domains if since is None or d.first_seen >= since]
    now = view.now
    if as_json:
        doc = {
            "now": _iso(now),
            "window": cfg.nod.window,
            "since": _iso(since if since is not None and since > view.since else view.since),
            "observed_since": _iso(view.observed_since),
            "warm_until": _iso(view.warm_until),
            "warming": view.warming,
            "domains": [
                {"domain": d.domain, "first_seen": _iso(d.first_seen),
                 "age_seconds": now - d.first_seen, "code": d.code(now), "names": d.names}
                for d in domains
            ],
        }  # fmt: skip
        click.echo(json.dumps(doc, indent=2))
        return
    if view.warming:
        until = _iso(view.warm_until) or "(the store is empty)"
        click.echo(f"warming up until {until}: no domain is new before (see [nod] warmup)")
        return
    shown = since if since is not None and since > view.since else view.since
    click.echo(f"{len(domains)} newly observed domains (first seen since {_iso(shown)})")
    for d in domains:
        age = (now - d.first_seen) // 60
        click.echo(f"{d.domain:<40} {_iso(d.first_seen)}  {age // 60:>3}h{age % 60:02d}m"
                   f"  {d.code(now)}  {d.names} names")  # fmt: skip
