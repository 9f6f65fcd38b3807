"""``mamori rules``: local rules (block or allow a name), as the console and the REST API.

The change is written to the rules table (with its audit entry, actor
``cli:$USER``) and to the managed zone files; a running ``mamori serve``
picks the files up with its zone file watcher (``[policy] watch_interval``).
"""

from __future__ import annotations

import getpass
import time

import click

from mamori.cli.util import config_option, fail, load_config
from mamori.errors import MamoriError


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


@click.group()
def rules() -> None:
    """Local rules: block or allow names (first in the policy order)."""


@rules.command("list")
@config_option
@click.option("--search", "-q", default="", help="Substring of the name or the comment")
@click.option("--limit", default=1000, show_default=True, help="Rules shown at most")
def rules_list(config_path: str, search: str, limit: int) -> None:
    """The rules, by name: NAME ACTION [subdomains] [groups] comment."""
    from mamori.store.rules import open_store

    store = open_store(load_config(config_path))
    try:
        found, total = store.search(search, max(limit, 1))
    finally:
        store.audit.close()
    for r in found:
        sub = " +subdomains" if r.subdomains else ""
        groups = f" groups={','.join(r.groups)}" if r.groups else ""
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created))
        comment = f"  # {r.comment}" if r.comment else ""
        click.echo(f"{r.name} {r.action}{sub}{groups} ({r.actor}, {when}){comment}")
    if total > len(found):
        click.echo(f"... {total - len(found)} more", err=True)


@rules.command("add")
@config_option
@click.argument("name")
@click.option("--allow", "action", flag_value="allow", help="Allow (PASSTHRU) instead of block")
@click.option("--block", "action", flag_value="block", default=True, help="Block (the default)")
@click.option("--subdomains/--exact", default=False, help="Also every name below NAME")
@click.option("--comment", default="", help="Why (at most 500 characters)")
@click.option("--group", "groups", multiple=True, help="Only for this [[group]] (repeatable)")
def rules_add(
    config_path: str, name: str, action: str, subdomains: bool, comment: str, groups: tuple[str]
) -> None:
    """Block (or --allow) NAME; replaces the rule of the same name and groups."""
    from mamori.store.rules import RuleError, check_rule, open_store

    cfg = load_config(config_path)
    doc = {"name": name, "action": action, "subdomains": subdomains, "comment": comment,
           "groups": list(groups)}  # fmt: skip
    try:
        fields = check_rule(doc, {g.name for g in cfg.groups})
    except RuleError as e:
        fail(MamoriError(f"{e.field}: {e}"))
    store = open_store(cfg)
    try:
        rule, created = store.add(fields, _actor(), "")
    except OSError as e:
        fail(MamoriError(f"cannot write the rules zone: {e}"))
    finally:
        store.audit.close()
    verb = "added" if created else "replaced"
    click.echo(f"{verb}: {rule.name} {rule.action}{' +subdomains' if rule.subdomains else ''}")
    _watched(cfg.policy.watch_interval)


@rules.command("remove")
@config_option
@click.argument("name")
@click.option("--group", "groups", multiple=True, help="Only the rule of these groups")
def rules_remove(config_path: str, name: str, groups: tuple[str]) -> None:
    """Remove the rules of NAME (all of them, or the one of exactly --group ...)."""
    from mamori.store.rules import RuleError, open_store, rule_name

    cfg = load_config(config_path)
    try:
        normal = rule_name(name)
    except RuleError as e:
        fail(MamoriError(f"{e.field}: {e}"))
    store = open_store(cfg)
    try:
        gone = store.remove(normal, _actor(), "", tuple(groups) if groups else None)
    except OSError as e:
        fail(MamoriError(f"cannot write the rules zone: {e}"))
    finally:
        store.audit.close()
    if not gone:
        fail(MamoriError(f"no rule for {normal}"))
    click.echo(f"removed: {normal} ({len(gone)} rule{'s' if len(gone) > 1 else ''})")
    _watched(cfg.policy.watch_interval)


def _watched(interval: float) -> None:
    if interval > 0:
        click.echo(f"a running mamori serve applies it within {interval:g} s (zone file watcher)")
    else:
        click.echo("[policy] watch_interval = 0: reload a running mamori serve (SIGHUP)")
