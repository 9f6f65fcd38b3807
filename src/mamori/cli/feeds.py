"""``mamori feeds``: update, list, show, diff, lookup, export."""

from __future__ import annotations

import sys
import time

import click

from mamori import config as cfgmod
from mamori.cli.util import config_option, fail, load_config, progress, setup_logging
from mamori.config.feeds import dataset_feeds
from mamori.errors import MamoriError, StoreError


@click.group()
def feeds() -> None:
    """Threat feeds and datasets: update them, see what they hold, export them."""


def _when(t: int | float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t else "never"


@feeds.command("update")
@config_option
@click.argument("names", nargs=-1)
def feeds_update(config_path: str, names: tuple[str, ...]) -> None:
    """Fetch, check and compile the feeds (all enabled ones, or NAMES), then the
    datasets that unite them.

    A running `mamori serve` picks the compiled zones up by itself.
    """
    from mamori.feeds.parsers import FeedError, FeedUnreachableError
    from mamori.feeds.sources import compile_datasets, update

    cfg = load_config(config_path)
    setup_logging("warning")
    unknown = set(names) - {f.name for f in cfg.feeds}
    if unknown:
        fail(MamoriError(f"unknown feed(s): {', '.join(sorted(unknown))}"))
    failed = 0
    done: set[str] = set()
    try:
        with progress() as report:
            for feed in cfg.feeds:
                if (names and feed.name not in names) or (not names and not feed.enabled):
                    continue
                try:
                    click.echo(update(feed, cfg.store, report).summary())  # type: ignore[arg-type]
                    done.add(feed.name)
                except FeedUnreachableError as e:
                    failed += 1
                    click.echo(f"{feed.name}: not reachable, skipped: {e}", err=True)
                except FeedError as e:
                    failed += 1
                    click.echo(f"{feed.name}: refused, last good version kept: {e}", err=True)
        for name, serial, changed, n in compile_datasets(cfg, done):
            state = "changed" if changed else "unchanged"
            click.echo(f"dataset {name}: {n} entries; serial {serial}, {state}")
    except StoreError as e:  # e.g. the store's lock file cannot be opened
        fail(e)
    if failed:
        sys.exit(1)


@feeds.command("list")
@config_option
def feeds_list(config_path: str) -> None:
    """Each feed and dataset: format, source, compiled rules and serial, last update."""
    cfg = load_config(config_path)
    for feed in cfg.feeds:
        zone = cfgmod.feed_zone(feed, cfg.store)
        source = feed.url or str(feed.path)
        state = "disabled" if not feed.enabled else _enforced(feed.enforce)
        if feed.publish:
            state += ", published"
        click.echo(
            f"{feed.name} [{feed.category}, {feed.format}, {state}] {source}: {_compiled(zone)}"
        )
    for ds in cfg.datasets:
        zone = cfgmod.dataset_zone(ds, cfg.store)
        names = ", ".join(f.name for f in dataset_feeds(ds, cfg.feeds))
        state = _enforced(ds.enforce) + (", published" if ds.publish else "")
        click.echo(f"dataset {ds.name} [{state}] = {names}: {_compiled(zone)}")


def _enforced(enforce: bool | str) -> str:
    if enforce == "preview":
        return "preview (logged as would block, not applied)"
    return "enforced" if enforce else "not enforced"


def _compiled(zone: cfgmod.RpzConfig) -> str:
    assert zone.file is not None
    if not zone.file.exists():
        return "not compiled yet (mamori feeds update)"
    text = zone.file.read_text(encoding="utf-8").splitlines()
    serial = next((ln.split()[4] for ln in text if ln.startswith("@ SOA")), "?")
    rules = sum(1 for ln in text if ln and not ln.startswith((";", "$", "@")))
    return f"{rules} rules, serial {serial}, updated {_when(zone.file.stat().st_mtime)}"


def _members(cfg: cfgmod.Config, name: str) -> tuple[list[str], str, str]:
    """(feed names, category, action) of a feed or dataset NAME."""
    for feed in cfg.feeds:
        if feed.name == name:
            return [feed.name], feed.category, feed.action
    for ds in cfg.datasets:
        if ds.name == name:
            members = dataset_feeds(ds, cfg.feeds)
            cats = sorted({f.category for f in members})
            return [f.name for f in members], "+".join(cats), ds.action
    fail(MamoriError(f"no feed or dataset named {name}"))


@feeds.command("show")
@config_option
@click.argument("name")
def feeds_show(config_path: str, name: str) -> None:
    """A feed's or dataset's state: entries, last updates, rejected lines."""
    from mamori.feeds.dataset import FeedDB, db_path

    cfg = load_config(config_path)
    names, category, action = _members(cfg, name)
    with FeedDB(db_path(cfg.store.path)) as db:
        feed = next((f for f in cfg.feeds if f.name == name), None)
        if feed is None:
            ds = next(d for d in cfg.datasets if d.name == name)
            click.echo(f"dataset {name}: {category}, action {action}, feeds {', '.join(names)}")
            click.echo(
                f"  zone {cfgmod.dataset_zone(ds, cfg.store).name}:"
                f" {_compiled(cfgmod.dataset_zone(ds, cfg.store))}"
            )
            click.echo(f"  entries: {len(db.listed(names))} (union)")
            return
        click.echo(f"feed {name}: {category}, {feed.format}, action {action}")
        click.echo(f"  source: {feed.url or feed.path}, refresh every {feed.refresh}s")
        zone = cfgmod.feed_zone(feed, cfg.store)
        click.echo(f"  zone {zone.name}: {_compiled(zone)}")
        listed, lingering = db.counts(name)
        extra = f" ({lingering} left the source, kept until delist_after)" if lingering else ""
        click.echo(f"  entries: {listed}{extra}")
        click.echo(f"  last good update: {_when(db.last_good(name))}")
        updates = db.updates(name, 5)
        if updates:
            click.echo("  recent updates:")
        for at, ok, _source, summary in updates:
            click.echo(f"    {_when(at)} {'ok     ' if ok else 'REFUSED'} {summary}")
        rejects = db.rejects(name, 10)
        if rejects:
            click.echo("  rejected lines (last good update):")
        for line, text, why in rejects:
            click.echo(f"    line {line}: {why}: {text[:80]}")
        skips = db.skips(name)
        if skips:
            total = sum(n for _why, n, _line, _text in skips)
            click.echo(f"  skipped lines, not applied (last good update): {total}")
        for why, n, line, text in skips:
            click.echo(f"    {n} {why} (first: line {line}: {text[:60]})")


@feeds.command("lookup")
@config_option
@click.argument("value")
def feeds_lookup(config_path: str, value: str) -> None:
    """Which feeds list VALUE (a name, URL, address or network), since when, why."""
    from mamori.feeds.dataset import FeedDB, db_path
    from mamori.feeds.normalize import RejectedError, entry

    cfg = load_config(config_path)
    try:
        e = entry(value)
    except RejectedError as r:
        fail(MamoriError(f"{value}: {r}"))
    with FeedDB(db_path(cfg.store.path)) as db:
        rows = db.provenance(e.value)
    if not rows:
        click.echo(f"{e.value}: not listed by any feed")
        sys.exit(1)
    for p in rows:
        star = "*." if p.kind == "wildcard" else ""
        state = "listed" if p.listed else "no longer listed"
        if p.delisted and p.listed:
            state = f"listed, left the source {_when(p.delisted)}"
        mods = f" ${p.modifiers}" if p.modifiers else ""
        click.echo(
            f"{star}{p.value}{mods} [{p.rule}] feed {p.feed}: {state}; first listed"
            f" {_when(p.first_listed)}, last seen {_when(p.last_seen)}"
            + (f"; reason: {p.reason}" if p.reason else "")
            + (f"; reference: {p.reference}" if p.reference else "")
        )


@feeds.command("diff")
@config_option
@click.argument("name")
@click.option("--limit", default=50, show_default=True, help="Entries shown per side.")
def feeds_diff(config_path: str, name: str, limit: int) -> None:
    """What updating feed NAME now would add and remove (nothing is written)."""
    from mamori.feeds import guard
    from mamori.feeds.dataset import FeedDB, db_path
    from mamori.feeds.normalize import Entry
    from mamori.feeds.parsers import FeedError, check_budget
    from mamori.feeds.sources import cache_dir, read

    cfg = load_config(config_path)
    feed = next((f for f in cfg.feeds if f.name == name), None)
    if feed is None:
        fail(MamoriError(f"no feed named {name}"))
    try:
        result, source = read(feed, cache_dir(cfg.store))
        check_budget(result, f"feed {name}", feed.max_bad)
        allow = guard.read_allowlist(feed.allowlist)
    except FeedError as e:
        fail(e)
    new = {
        (e.kind, e.value, e.modifiers) for e in result.entries if guard.refusal(e, allow) is None
    }
    with FeedDB(db_path(cfg.store.path)) as db:
        old = {(e.kind, e.value, e.modifiers) for e in db.listed([name])}
    added, removed = sorted(new - old), sorted(old - new)
    click.echo(f"{name} ({source}): +{len(added)} -{len(removed)}, {len(new & old)} unchanged")
    for sign, items in (("+", added), ("-", removed)):
        for kind, value, mods in items[:limit]:
            text = Entry(kind, value).value if kind != "wildcard" else "*." + value
            click.echo(f"{sign} {text}" + (f" ${mods}" if mods else ""))
        if len(items) > limit:
            click.echo(f"{sign} ... {len(items) - limit} more")


@feeds.command("export")
@config_option
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["hosts", "domains", "adblock", "rpz", "csv", "stix"]),
    default="domains",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File (default stdout).")
def feeds_export(config_path: str, name: str, fmt: str, output: str | None) -> None:
    """Write what feed or dataset NAME lists, as a list another tool reads."""
    from mamori.feeds.dataset import FeedDB, db_path
    from mamori.feeds.publish import lists
    from mamori.feeds.sources import target

    cfg = load_config(config_path)
    names, category, action = _members(cfg, name)
    with FeedDB(db_path(cfg.store.path)) as db:
        rows = db.rows(names, allow=True)
        if output is None:
            written, left = lists.write(fmt, name, category, rows, sys.stdout, target(action))
        else:
            from pathlib import Path

            from mamori.atomicfile import replacing

            with replacing(Path(output)) as f:
                written, left = lists.write(fmt, name, category, rows, f, target(action))
    note = f", {left} left out (not expressible in {fmt})" if left else ""
    click.echo(f"{name}: {written} entries written{note}", err=True)
