"""``mamori keys``: API keys for the HTTP APIs."""

from __future__ import annotations

import sys
import time

import click

from mamori.cli.util import config_option, fail, load_config
from mamori.errors import MamoriError


@click.group()
def keys() -> None:
    """API keys for the HTTP APIs (scope, rate limit, daily quota)."""


@keys.command("add")
@config_option
@click.argument("name")
@click.option("--rate", default=10.0, show_default=True, help="Requests per second")
@click.option("--burst", default=20.0, show_default=True, help="Requests in a burst")
@click.option("--quota", default=0, show_default=True, help="Requests per UTC day (0: none)")
@click.option(
    "--scope",
    type=click.Choice(["pdns", "read", "admin"]),
    default="pdns",
    show_default=True,
    help="pdns: the passive DNS APIs; read: also GET /api/v1/...; admin: also changes"
    " (rules, groups, feeds)",
)
def keys_add(
    config_path: str, name: str, rate: float, burst: float, quota: int, scope: str
) -> None:
    """Create key NAME and print it (the only time it is shown)."""
    from mamori.web.app import keys_path
    from mamori.web.keys import KeyStore

    cfg = load_config(config_path)
    store = KeyStore(keys_path(cfg))
    try:
        key = store.add(name, rate, max(burst, 1.0), quota, scope)
    except ValueError as e:
        fail(MamoriError(str(e)))
    finally:
        store.close()
    click.echo(key)


@keys.command("list")
@config_option
def keys_list(config_path: str) -> None:
    """Keys with their limits and today's use (never the keys themselves)."""
    from mamori.web.app import keys_path
    from mamori.web.keys import KeyStore

    store = KeyStore(keys_path(load_config(config_path)))
    try:
        for k in store.all_keys():
            quota = f"{k.used_today}/{k.quota} today" if k.quota else f"{k.used_today} today"
            created = time.strftime("%Y-%m-%d", time.gmtime(k.created))
            click.echo(
                f"{k.name}: scope {k.scope}, {k.rate:g}/s (burst {k.burst:g}), {quota},"
                f" created {created}"
            )
    finally:
        store.close()


@keys.command("remove")
@config_option
@click.argument("name")
def keys_remove(config_path: str, name: str) -> None:
    """Revoke key NAME."""
    from mamori.web.app import keys_path
    from mamori.web.keys import KeyStore

    store = KeyStore(keys_path(load_config(config_path)))
    try:
        if not store.remove(name):
            click.echo(f"no key named {name}", err=True)
            sys.exit(1)
    finally:
        store.close()


@click.group()
def reports() -> None:
    """False-positive reports sent from the block page."""


@reports.command("list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Closed ones too")
def reports_list(config_path: str, show_all: bool) -> None:
    """Open reports, newest first: id, time, client, name, rule, comment."""
    import sqlite3

    from mamori.web.blockpage import reports_path

    path = reports_path(load_config(config_path))
    if not path.exists():
        click.echo("no reports")
        return
    db = sqlite3.connect(path)
    try:
        where = "" if show_all else " WHERE status = 'open'"
        rows = db.execute(
            "SELECT id, time, client, name, rule, comment, status FROM reports"
            f"{where} ORDER BY time DESC"
        ).fetchall()
    finally:
        db.close()
    for rid, when, client, name, rule, comment, status in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(when))
        click.echo(f"#{rid} {stamp} [{status}] {client} {name} (rule {rule or '-'}): {comment}")
    if not rows:
        click.echo("no reports")


@reports.command("close")
@config_option
@click.argument("report_id", type=int)
def reports_close(config_path: str, report_id: int) -> None:
    """Mark report REPORT_ID as reviewed."""
    import sqlite3

    from mamori.web.blockpage import reports_path

    db = sqlite3.connect(reports_path(load_config(config_path)))
    try:
        with db:
            n = db.execute(
                "UPDATE reports SET status = 'closed' WHERE id = ?", (report_id,)
            ).rowcount
    finally:
        db.close()
    if not n:
        click.echo(f"no report #{report_id}", err=True)
        sys.exit(1)


@click.group()
def users() -> None:
    """Console users (passwords hashed with scrypt)."""


@users.command("add")
@config_option
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
def users_add(config_path: str, name: str, password_stdin: bool) -> None:
    """Create (or reset) console user NAME."""
    from mamori.web.app import keys_path
    from mamori.web.keys import KeyStore

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    store = KeyStore(keys_path(load_config(config_path)))
    try:
        store.add_user(name, password)
    except ValueError as e:
        fail(MamoriError(str(e)))
    finally:
        store.close()
    click.echo(f"user {name} can log in")


@users.command("remove")
@config_option
@click.argument("name")
def users_remove(config_path: str, name: str) -> None:
    """Remove console user NAME."""
    from mamori.web.app import keys_path
    from mamori.web.keys import KeyStore

    store = KeyStore(keys_path(load_config(config_path)))
    try:
        if not store.remove_user(name):
            click.echo(f"no user {name}", err=True)
            sys.exit(1)
    finally:
        store.close()
