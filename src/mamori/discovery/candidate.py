"""What a preview evaluates: a configured feed, dataset or policy zone, or a file, compiled
the way enforcement compiles it, and where it sits in the policy order.

A ``[[feed]]`` or ``[[dataset]]`` already updated has its policy zone on disk
(``<store dir>/feeds/NAME.rpz``, written by ``feeds.sources.update``): that zone
is what enforcing it applies, and it is what is previewed. A feed not updated
yet is read from its source (file or URL, as ``mamori feeds update`` reads it)
and compiled in memory; nothing is written to the store. A file is parsed in
the feed format given (or guessed), through the guards, into the RPZ rules
``feeds.publish.rpz`` writes, then loaded by the policy zone loader.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from mamori.config import Config, FeedConfig, RpzConfig, dataset_zone, feed_zone
from mamori.config.feeds import FORMATS, dataset_feeds
from mamori.discovery.preview import Candidate, PreviewError, ZoneSpec
from mamori.dnsutil import textfile
from mamori.feeds import guard, parsers
from mamori.feeds.dataset import ALLOW, FeedDB, db_path
from mamori.feeds.parsers import FeedError
from mamori.feeds.publish import rpz as rpz_out
from mamori.feeds.sources import cache_dir, fetch, target
from mamori.policy import zone as zone_mod
from mamori.policy.compiled import CompiledZone, compile_zone
from mamori.policy.engine import ZoneSettings
from mamori.policy.rules import LoadedZone, ZoneError

LINE_FORMATS = tuple(f for f in FORMATS if f not in ("taxii", "misp"))
FILE_ZONE = "preview.mamori."  # the zone name of a previewed file


def settings_of(rpz: RpzConfig) -> ZoneSettings:
    """The engine's settings of a configured zone (as the control plane makes them)."""
    return ZoneSettings(rpz.name, rpz.policy, rpz.log, rpz.max_policy_ttl, rpz.recursive_only,
                        rpz.nsdname_enable, rpz.nsip_enable, rpz.groups)  # fmt: skip


def policy_order(cfg: Config) -> list[str]:
    """Every policy zone name in evaluation order, as if every feed and dataset were
    enforced: the local rules, the DoH canary, the [[rpz]] zones, the feeds, the datasets."""
    feeds = [feed_zone(f, cfg.store).name for f in cfg.feeds if f.enabled]
    datasets = [dataset_zone(d, cfg.store).name for d in cfg.datasets]
    derived = set(feeds) | set(datasets)
    return [z.name for z in cfg.rpz if z.name not in derived] + feeds + datasets


def place(
    cfg: Config | None, zone: str, in_force: Sequence[ZoneSpec]
) -> tuple[list[ZoneSpec], list[ZoneSpec]]:
    """(zones before *zone*, zones after it) among *in_force* (in order), *zone* itself
    left out. A zone not in the configured order (a file) comes after all of them."""
    order = policy_order(cfg) if cfg is not None else []
    if zone not in order:
        return [z for z in in_force if z[1].name != zone], []
    rank = {name: i for i, name in enumerate(order)}
    mine = rank[zone]
    before = [z for z in in_force if rank.get(z[1].name, len(order)) < mine]
    after = [z for z in in_force if rank.get(z[1].name, len(order)) > mine]
    return before, after


def guess_format(path: Path, lines: Sequence[str]) -> str:
    """The feed format of a file by its name and first lines; "domains" when unsure."""
    suffix = path.suffix.lower()
    if suffix in (".rpz", ".zone"):
        return "rpz"
    if suffix == ".json":
        return "stix"
    if suffix == ".csv":
        return "csv"
    for raw in lines[:200]:
        text = raw.strip()
        if not text or text.startswith(("#", "!", ";")):
            continue
        if text.startswith(("$ORIGIN", "$TTL")) or " CNAME " in text.upper() or " SOA " in text:
            return "rpz"
        if text.startswith(("||", "@@", "|")):
            return "adblock"
        if text.startswith(("address=/", "server=/", "local=/")):
            return "dnsmasq"
        if text.startswith(("local-zone:", "local-data:", "server:")):
            return "unbound"
        if text.startswith("zone "):
            return "bind"
        first = text.split()[0]
        if first in ("0.0.0.0", "127.0.0.1", "::", "::1") and len(text.split()) > 1:
            return "hosts"
    return "domains"


def compile_lines(
    lines: Sequence[str],
    fmt: str,
    origin: str,
    label: str,
    action: str = "nxdomain",
    max_bad: float = 1.0,
    allowlist: Path | None = None,
    columns: Sequence[str] = (),
) -> tuple[LoadedZone, list[str]]:
    """A feed's lines compiled as ``feeds.sources.update`` compiles them: parsed,
    refused as a whole over *max_bad*, guarded, resolved into RPZ rules, written as a
    zone file (a temporary one) and loaded by the policy zone loader. (zone, notes on
    lines not applied). PreviewError for a feed that cannot be used."""
    try:
        result = parsers.parse(fmt, lines, columns)
        parsers.check_budget(result, label, max_bad)
        allow = guard.read_allowlist(allowlist)
    except FeedError as e:
        raise PreviewError(str(e)) from e
    entries = [e for e in result.entries if guard.refusal(e, allow) is None]
    notes = []
    if result.rejected:
        no, _text, why = result.rejected[0]
        notes.append(f"{len(result.rejected)} lines rejected (first: line {no}: {why})")
    if len(entries) < len(result.entries):
        notes.append(f"{len(result.entries) - len(entries)} entries refused by the guards")
    if result.skipped:
        notes.append(f"{len(result.skipped)} lines skipped (no DNS meaning)")
    rules = rpz_out.rules(entries, result.exceptions, target(action))
    return _load_rules(rules, origin), notes


def _load_rules(rules: list[str], origin: str) -> LoadedZone:
    with tempfile.TemporaryDirectory(prefix="mamori-preview-") as tmp:
        path = Path(tmp) / "candidate.rpz"
        rpz_out.write_zone(path, origin, rules)
        return load_file(path, origin)


def load_file(path: Path, origin: str) -> LoadedZone:
    """A policy zone file loaded (records that cannot be used skipped); PreviewError."""
    try:
        return zone_mod.load(path, origin, "skip")
    except (ZoneError, OSError) as e:
        raise PreviewError(f"{path}: {e}") from e


def compiled(zone: LoadedZone) -> CompiledZone:
    """*zone* compiled in memory (the form the service maps)."""
    return CompiledZone(compile_zone(zone))


def from_file(path: Path, fmt: str = "", action: str = "nxdomain") -> Candidate:
    """A file of a feed format (*fmt*, or guessed), compiled as a feed would be."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PreviewError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        lines = textfile.lines(textfile.decode(data))
    except UnicodeDecodeError as e:
        raise PreviewError(f"{path}: not valid {e.encoding.upper()}: {e.reason}") from None
    fmt = fmt or guess_format(path, lines)
    if fmt not in LINE_FORMATS:
        raise PreviewError(f"{path}: format {fmt!r} is not a file format we read"
                           f" ({', '.join(LINE_FORMATS)})")  # fmt: skip
    zone, notes = compile_lines(lines, fmt, FILE_ZONE, str(path), action)
    settings = ZoneSettings(FILE_ZONE)
    return Candidate(str(path), "file", compiled(zone), settings, (f"format {fmt}", *notes))


def from_config(cfg: Config, name: str) -> Candidate:
    """The [[feed]], [[dataset]] or policy zone (``[[rpz]]`` name, with or without its
    trailing dot) called *name*. PreviewError when there is none."""
    feed = next((f for f in cfg.feeds if f.name == name), None)
    if feed is not None:
        return _feed(cfg, feed)
    ds = next((d for d in cfg.datasets if d.name == name), None)
    if ds is not None:
        rpz = dataset_zone(ds, cfg.store)
        assert rpz.file is not None
        if rpz.file.exists():
            zone = load_file(rpz.file, rpz.name)
            notes: tuple[str, ...] = ()
        else:
            members = [f.name for f in dataset_feeds(ds, cfg.feeds)]
            with FeedDB(db_path(cfg.store.path)) as db:
                entries, allowed = db.listed(members), db.listed(members, ALLOW)
            zone = _load_rules(rpz_out.rules(entries, allowed, target(ds.action)), rpz.name)
            notes = ("dataset not compiled yet: the union of its feeds' stored entries",)
        return Candidate(name, "dataset", compiled(zone), settings_of(rpz), notes)
    zname = name.rstrip(".").lower() + "."
    found = next((z for z in cfg.rpz if z.name == zname), None)
    if found is not None and found.file is not None:
        if not found.file.exists():
            raise PreviewError(f"policy zone {found.name}: {found.file} does not exist (yet)")
        zone = load_file(found.file, found.name)
        return Candidate(found.name, "rpz", compiled(zone), settings_of(found))
    raise PreviewError(f"no feed, dataset or policy zone named {name}")


def _feed(cfg: Config, feed: FeedConfig) -> Candidate:
    rpz = feed_zone(feed, cfg.store)
    assert rpz.file is not None
    if rpz.file.exists():
        zone = load_file(rpz.file, rpz.name)
        return Candidate(feed.name, "feed", compiled(zone), settings_of(rpz))
    if feed.format not in LINE_FORMATS:
        raise PreviewError(f"feed {feed.name} has not been updated yet: mamori feeds update"
                           f" {feed.name}")  # fmt: skip
    try:
        lines, source = fetch(feed, cache_dir(cfg.store))
    except FeedError as e:
        raise PreviewError(str(e)) from e
    zone, notes = compile_lines(lines, feed.format, rpz.name, f"feed {feed.name}", feed.action,
                                feed.max_bad, feed.allowlist, feed.columns)  # fmt: skip
    note = f"not updated yet: read from its source ({source}), nothing stored"
    return Candidate(feed.name, "feed", compiled(zone), settings_of(rpz), (note, *notes))
