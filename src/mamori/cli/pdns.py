"""``mamori pdns``: ingest captures, query the store (dnsdbq-like), brand keyword search."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mamori import config as cfgmod
from mamori.cli.pdns_move import open_store, pdns_export, pdns_import
from mamori.cli.util import config_option, fail, load_config, setup_logging
from mamori.errors import MamoriError
from mamori.store.pdns_base import PdnsStore

if TYPE_CHECKING:
    from mamori.discovery.geo import Geo, GeoInfo
    from mamori.store.pdns_base import Record


@click.group()
def pdns() -> None:
    """Passive DNS: ingest packet captures, query what was resolved."""


pdns.add_command(pdns_export)
pdns.add_command(pdns_import)


@pdns.command("ingest")
@config_option
@click.option("--sensor", default="", help="Sensor id for these captures (default: pcap:HOST).")
@click.option("--no-nxdomain", is_flag=True, help="Do not keep NXDOMAIN observations.")
@click.option(
    "--commit-every",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Commit (with the capture's position) every N DNS messages: what a crash re-reads.",
)
@click.argument("captures", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def pdns_ingest(
    config_path: str, sensor: str, no_nxdomain: bool, commit_every: int, captures: tuple[str, ...]
) -> None:
    """Read pcap/pcapng CAPTURES into the passive DNS store of the config.

    Safe to interrupt (even kill -9) and run again: what was committed is not
    counted twice, and captures already ingested are skipped."""
    from mamori.cli.util import progress
    from mamori.pdns.ingest import ingest
    from mamori.pdns.sensors.pcap import CaptureError

    cfg = load_config(config_path)
    setup_logging("warning")
    store = open_store(cfg)
    try:
        with progress() as report:
            result = ingest(
                [Path(c) for c in captures],
                store,
                sensor or f"pcap:{socket.gethostname()}",
                report,  # type: ignore[arg-type]
                keep_nxdomain=not no_nxdomain and cfg.pdns.nxdomain,
                commit_every=commit_every,
            )
        kept = _drain(store)
    except (CaptureError, OSError, MamoriError) as e:
        fail(MamoriError(str(e)))
    finally:
        store.close()
    click.echo(result.summary())
    if kept:
        click.echo(
            f"{kept} batch(es) kept on disk: ClickHouse did not take them; they are sent by"
            " the next run (or mamori serve) once it answers",
            err=True,
        )


def _drain(store: PdnsStore) -> int:
    """ClickHouse: send the batches kept on disk now; how many are still kept."""
    drain = getattr(store, "drain", None)
    return int(drain(force=True)) if drain is not None else 0


@pdns.command("query")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML configuration file (its passive DNS store).",
)
@click.option("-r", "rrset", help="NAME[/TYPE[/BAILIWICK]]; *.NAME below it, NAME.* to the right")
@click.option("-n", "rdata_name", help="NAME[/TYPE]: records whose rdata is this name")
@click.option("-i", "rdata_ip", help="IP, CIDR (a.b.c.d/24 or a.b.c.d,24) or LOW-HIGH")
@click.option("--asn", "asn", help="AS number (15169 or AS15169): records whose address is in it")
@click.option("-t", "rrtype", help="Only this rrtype (with -r, -n)")
@click.option("-A", "after", help="Seen on or after: epoch, ISO date/time, or relative (1w2d)")
@click.option("-B", "before", help="Seen on or before: same forms")
@click.option(
    "-c", "complete", is_flag=True, help="Complete fencing: whole life within -A/-B (inclusive)"
)
@click.option("-l", "limit", default=10000, show_default=True, help="At most this many records")
@click.option("-O", "offset", default=0, help="Skip this many records")
@click.option("-k", "sort_key", type=click.Choice(["first", "last", "count", "name", "data"]))
@click.option("-s", "ascending", is_flag=True, help="Sort ascending by -k")
@click.option("-S", "descending", is_flag=True, help="Sort descending by -k")
@click.option("-j", "as_json", is_flag=True, help="JSON lines (COF)")
@click.option("--csv", "as_csv", is_flag=True, help="CSV")
@click.option("--server", default="", help="A remote mamori's API URL instead of the local store")
@click.option("--key", default="", envvar="MAMORI_API_KEY", help="API key for --server")
def pdns_query(
    config_path: str | None,
    rrset: str | None,
    rdata_name: str | None,
    rdata_ip: str | None,
    asn: str | None,
    rrtype: str | None,
    after: str | None,
    before: str | None,
    complete: bool,
    limit: int,
    offset: int,
    sort_key: str | None,
    ascending: bool,
    descending: bool,
    as_json: bool,
    as_csv: bool,
    server: str,
    key: str,
) -> None:
    """Look up the local store (or --server), as dnsdbq looks up DNSDB (exit 1: nothing found).

    With [geo] in the config, A/AAAA records show their AS and country (-j: asn,
    as_name, country)."""
    from mamori.pdns import formats, query
    from mamori.pdns.model import type_code
    from mamori.store.pdns_base import Fences

    given = [x for x in (rrset, rdata_name, rdata_ip, asn) if x]
    if len(given) != 1:
        fail(MamoriError("give exactly one of -r, -n, -i, --asn"))
    if asn and server:
        fail(MamoriError("--asn looks up the local store (give --config FILE, not --server)"))
    if not server and not config_path:
        fail(MamoriError("give --config FILE (the local store) or --server URL --key KEY"))
    try:
        as_number = _parse_asn(asn) if asn else 0
        if rrset:
            ask = query.parse_rrset(rrset)
        elif rdata_name:
            ask = query.parse_rdata_name(rdata_name)
        elif rdata_ip:
            ask = query.parse_rdata_ip(rdata_ip)
        else:
            ask = query.Ask("asn", str(as_number))
        if rrtype:
            ask = query.Ask(ask.kind, ask.value, type_code(rrtype), ask.bailiwick)
        a = formats.parse_time(after) if after else None
        b = formats.parse_time(before) if before else None
    except ValueError as e:
        fail(MamoriError(str(e)))
    # dnsdbq: -A/-B keep records whose life overlaps the window; -c: within it.
    # Every fence includes its own time ("on or after", "on or before").
    fences = (
        Fences(first_after=a, last_before=b) if complete else Fences(last_after=a, first_before=b)
    )
    geo: Geo | None = None
    if server:
        from mamori.pdns.remote import RemoteError, run

        try:
            records = run(server, key, ask, fences, limit, offset)
        except RemoteError as e:
            fail(MamoriError(str(e)))
    else:
        assert config_path is not None
        cfg = load_config(config_path)
        geo = _geo(cfg)
        store = open_store(cfg, readonly=True)
        try:
            if as_number:
                from mamori.discovery.geo import records_on_asn

                if geo is None or not (geo.mmdbs or geo.tsvs):
                    fail(MamoriError("--asn needs AS databases: [geo] mmdb or ip2asn"))
                records = records_on_asn(store, geo, as_number, fences, limit, offset)
                records = [r for r in records if ask.rrtype in (None, r.rrtype)]
            else:
                records = query.run(store, ask, fences, limit, offset)
        except MamoriError as e:  # the store cannot answer (ClickHouse away, damaged file)
            fail(e)
        finally:
            store.close()
    if sort_key:
        field = {"first": "time_first", "last": "time_last", "count": "count",
                 "name": "rrname", "data": "rdata"}[sort_key]  # fmt: skip
        records.sort(key=lambda r: getattr(r, field), reverse=descending or not ascending)
    from mamori.discovery.geo import record_geo

    def info(r: Record) -> GeoInfo | None:
        return record_geo(geo, r.rrtype, r.rdata)

    if as_json:
        for r in records:
            g = info(r)
            click.echo(json.dumps({**formats.cof(r), **(g.fields() if g else {})}))
    elif as_csv:
        extra = None
        if geo is not None:
            extra = ("asn", "as_name", "country"), lambda r: _geo_columns(info(r))
        click.echo(formats.csv_text(records, extra), nl=False)
    elif records:

        def note(r: Record) -> str:
            g = info(r)
            return g.label() if g else ""

        click.echo(formats.text(records, note if geo is not None else None), nl=False)
    if not records:
        click.echo(";; no results", err=True)
        sys.exit(1)


def _parse_asn(text: str) -> int:
    from mamori.discovery.geo import parse_asn

    return parse_asn(text)


def _geo(cfg: cfgmod.Config) -> Geo | None:
    """The ``[geo]`` databases of *cfg* opened (None without ``[geo]``); a database that
    cannot be read is a clear error naming it (exit 2)."""
    if not cfg.geo.enabled:
        return None
    from mamori.discovery.geo import GeoError, open_geo

    g = cfg.geo
    try:
        return open_geo(g.mmdb, g.ip2asn, g.builtin_country)
    except GeoError as e:
        fail(e)


def _geo_columns(g: GeoInfo | None) -> list[object]:
    if g is None:
        return ["", "", ""]
    return ["" if g.asn is None else g.asn, g.as_name, g.country]


@pdns.command("search")
@config_option
@click.argument("keyword")
@click.option("-l", "limit", default=1000, show_default=True, help="At most this many names")
@click.option("-j", "as_json", is_flag=True, help="JSON lines")
def pdns_search(config_path: str, keyword: str, limit: int, as_json: bool) -> None:
    """Every observed name containing KEYWORD (brand look-alikes), by registrable domain."""
    from publicsuffixlist import PublicSuffixList

    from mamori.pdns.formats import iso
    from mamori.store.pdns_keys import unicode_name

    cfg = load_config(config_path)
    store = open_store(cfg, readonly=True)
    try:
        try:
            names = store.keyword(keyword, limit)
        except ValueError as e:
            fail(MamoriError(str(e)))
        seen = store.names_first_last(names)
    except MamoriError as e:  # the store cannot answer (ClickHouse away, damaged file)
        fail(e)
    finally:
        store.close()
    psl = PublicSuffixList()
    groups: dict[str, list[str]] = {}
    for name in names:
        base = psl.privatesuffix(name.rstrip(".")) or name.rstrip(".")
        groups.setdefault(base, []).append(name)
    for base in sorted(groups):
        if as_json:
            for name in sorted(groups[base]):
                first, last, count = seen.get(name, (0, 0, 0))
                doc = {"registrable": base, "rrname": name, "display": unicode_name(name),
                       "time_first": first, "time_last": last, "count": count}  # fmt: skip
                click.echo(json.dumps(doc, ensure_ascii=False))
            continue
        click.echo(unicode_name(base))
        for name in sorted(groups[base]):
            first, last, count = seen.get(name, (0, 0, 0))
            shown = unicode_name(name)
            extra = f" ({name})" if shown != name else ""
            click.echo(f"  {shown}{extra}  first {iso(first)}  last {iso(last)}  count {count}")
    if not names:
        click.echo(f";; no observed name contains {keyword!r}", err=True)
        sys.exit(1)


@pdns.command("stats")
@config_option
def pdns_stats(config_path: str) -> None:
    """Store size and sensors (observations, last seen)."""
    from mamori.pdns.formats import iso
    from mamori.store.pdns_open import describe, is_clickhouse

    cfg = load_config(config_path)
    path = cfgmod.pdns_path(cfg)
    store = open_store(cfg, readonly=True)
    try:
        tuples, names = store.stats()
        sensors = store.sensors()
    except MamoriError as e:
        fail(e)
    finally:
        store.close()
    if is_clickhouse(cfg):
        click.echo(f"{describe(cfg)}: {tuples} tuples, {names} names")
    else:
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        click.echo(f"{path}: {tuples} tuples, {names} names, {size / 1e6:.1f} MB")
    for sensor, n, last in sorted(sensors):
        click.echo(f"  sensor {sensor}: {n} observations, last {iso(last)}")


@pdns.command("collect")
@config_option
@click.option("--listen", default="", help="unix:/path or tcp:HOST:PORT (default: [pdns] dnstap)")
def pdns_collect(config_path: str, listen: str) -> None:
    """Collect dnstap from resolvers into the store (foreground; SIGTERM stops)."""
    import asyncio
    import contextlib
    import signal

    from mamori.pdns.sensors.dnstap import collect

    cfg = load_config(config_path)
    setup_logging(cfg.log.level)
    where = listen or cfg.pdns.dnstap
    if not where:
        fail(MamoriError("no dnstap listener: set [pdns] dnstap or --listen"))
    store = open_store(cfg)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await collect(where, store, "dnstap:", cfg.pdns.nxdomain, cfg.pdns.flush_interval)

    try:
        asyncio.run(main())
    except (OSError, ValueError) as e:
        fail(MamoriError(f"dnstap {where}: {e}"))
    finally:
        store.close()


@pdns.command("capture")
@config_option
@click.option("-i", "--interface", default="", help="Interface (default: [pdns] capture)")
def pdns_capture(config_path: str, interface: str) -> None:
    """Capture DNS answers from a network interface into the store (foreground; root)."""
    import signal
    import threading

    from mamori.pdns.aggregate import Aggregator
    from mamori.pdns.sensors.live import CaptureUnavailableError, messages
    from mamori.pdns.sensors.pcap import Reader

    cfg = load_config(config_path)
    setup_logging(cfg.log.level)
    iface = interface or cfg.pdns.capture
    if not iface:
        fail(MamoriError("no interface: set [pdns] capture or -i"))
    store = open_store(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agg = Aggregator(cfg.pdns.nxdomain)
    reader = Reader(cfg.pdns.capture_port)
    sensor = f"capture:{socket.gethostname()}:{iface}"
    last_flush = time.monotonic()
    try:
        for _ts, *_addrs, data in messages(iface, stop.is_set, reader, cfg.pdns.capture_port):
            if agg.add_answer(data, int(time.time()), sensor) is None:
                reader.counters.malformed += 1
            if time.monotonic() - last_flush >= cfg.pdns.flush_interval:
                agg.flush(store)
                last_flush = time.monotonic()
    except CaptureUnavailableError as e:
        fail(MamoriError(str(e)))
    finally:
        agg.flush(store)
        store.close()
        c = reader.counters
        click.echo(
            f"capture {iface}: {c.packets} packets, {c.responses} responses, {c.malformed}"
            " malformed",
            err=True,
        )


@pdns.command("compact")
@config_option
@click.option("--days", type=int, default=0, help="Days to keep (default: [pdns] retention_days)")
def pdns_compact(config_path: str, days: int) -> None:
    """Drop tuples not seen for DAYS days, then reclaim the space (VACUUM)."""
    cfg = load_config(config_path)
    keep = days or cfg.pdns.retention_days
    if keep <= 0:
        fail(MamoriError("nothing to do: give --days N or set [pdns] retention_days"))
    store = open_store(cfg)
    try:
        tuples, names = store.compact(int(time.time() - keep * 86400))
        db = getattr(store, "db", None)
        if db is not None:  # SQLite: give the space back
            db.execute("VACUUM")
    except MamoriError as e:
        fail(e)
    finally:
        store.close()
    click.echo(f"dropped {tuples} tuples and {names} names not seen for {keep} days")
