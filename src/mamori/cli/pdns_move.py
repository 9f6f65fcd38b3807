"""``mamori pdns export`` / ``import``: a passive DNS store to NDJSON and back (DNSDB or
COF objects), through the ``PdnsPortable`` seam so that any backend can be either end."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import click

from mamori import config as cfgmod
from mamori.cli.util import config_option, fail, load_config
from mamori.errors import MamoriError
from mamori.pdns import formats
from mamori.store.pdns_base import NxRecord, NxTuples, PdnsFull, PdnsPortable, Record


def open_store(cfg: cfgmod.Config, readonly: bool = False) -> PdnsFull:
    """The config's store through the factory: SQLite, or ClickHouse with [pdns] url."""
    from mamori.store.pdns_open import describe, is_clickhouse, open_pdns

    if readonly and not is_clickhouse(cfg) and not cfgmod.pdns_path(cfg).exists():
        where = describe(cfg)
        fail(MamoriError(f"{where}: no passive DNS store yet (mamori pdns ingest, or [pdns])"))
    try:
        return open_pdns(cfg, readonly=readonly)
    except MamoriError as e:
        fail(e)


@click.command("export")
@config_option
@click.option("-o", "--output", default="-", show_default=True, help="FILE, or - for stdout")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dnsdb", "cof"]),
    default="dnsdb",
    show_default=True,
    help="dnsdb: as dnsdbq -j prints (rdata a list); cof: CIRCL COF (rdata a string)",
)
@click.option(
    "--no-nxdomain",
    is_flag=True,
    help='Leave out the NXDOMAIN rows (lines with "rcode": "NXDOMAIN" and no rdata,'
    " after the tuples: a mamori extension other COF/DNSDB readers may not know)",
)
def pdns_export(config_path: str, output: str, fmt: str, no_nxdomain: bool) -> None:
    """Write every tuple of the store as NDJSON, in name order (streamed: memory stays
    flat), then its NXDOMAIN rows. A FILE appears whole or not at all."""
    from mamori.atomicfile import replacing

    store = open_store(load_config(config_path), readonly=True)
    source: PdnsPortable = store
    n = nx = 0
    try:
        total = store.stats()[0]
        with _bar() as report, contextlib.ExitStack() as stack:
            out = sys.stdout if output == "-" else stack.enter_context(replacing(Path(output)))
            for n, r in enumerate(source.export_records(), 1):
                out.write(formats.export_line(r, fmt) + "\n")
                if n % 10_000 == 0:
                    report("export", n, total)
            report("export", n, n)
            if not no_nxdomain:
                for row in source.export_nxdomain():
                    out.write(formats.export_nx_line(row) + "\n")
                    nx += 1
    except OSError as e:
        fail(MamoriError(f"{output}: {e}"))
    except MamoriError as e:  # the store cannot answer (ClickHouse away): nothing written
        fail(e)
    finally:
        store.close()
    rows = f" and {nx} NXDOMAIN rows" if nx else ""
    click.echo(f"exported {n} tuples{rows} ({fmt}) to {output}", err=True)


@click.command("import")
@config_option
@click.argument("source")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dnsdb", "cof"]),
    default="dnsdb",
    show_default=True,
    help="dnsdb: dnsdbq -j lines (SAF framing and zone_time_* read too); cof: CIRCL COF",
)
@click.option("--skip-bad", is_flag=True, help="Skip lines that are not records (and count them)")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Commit every N records",
)
def pdns_import(config_path: str, source: str, fmt: str, skip_bad: bool, batch: int) -> None:
    """Merge an NDJSON export (SOURCE: a FILE or - for stdin) into the store: per tuple
    (and per NXDOMAIN row), the earliest time_first, the latest time_last, counts added
    (so importing the same export twice doubles its counts).

    A bad line stops the import naming its line number (exit 2). A FILE is read through
    once first, so nothing is imported from a FILE with a bad line; from stdin, the
    records before it are imported, and the message says how many. --skip-bad skips bad
    lines instead, and counts them."""
    cfg = load_config(config_path)
    path = None if source == "-" else Path(source)
    if path is not None and not path.is_file():
        fail(MamoriError(f"{source}: no such file"))
    errors: list[formats.BadLineError] = []
    if path is not None and not skip_bad:
        try:
            with path.open("rb") as f:
                for _ in _lines(f, fmt, False, errors, lambda _: None):
                    pass
        except OSError as e:
            fail(MamoriError(f"{source}: {e}"))
        if errors:
            fail(MamoriError(f"{source}: {errors[0]} (nothing imported)"))
    store = open_store(cfg)
    target: PdnsPortable = store
    stdin: BinaryIO = sys.stdin.buffer
    nx = _NxDiverter(store, batch)
    started = time.time_ns()
    try:
        already = store.stats()[0]
        with _bar() as report:
            size = path.stat().st_size if path is not None else None
            stream = path.open("rb") if path is not None else contextlib.nullcontext(stdin)
            with stream as f:
                lines = _lines(f, fmt, skip_bad, errors, lambda done: report("import", done, size))
                read = target.import_records(nx.records(lines), batch)
                nx.flush()
    except (OSError, ValueError, OverflowError, sqlite3.Error) as e:
        fail(MamoriError(f"{source}: {e}"))
    except MamoriError as e:  # the store cannot answer (ClickHouse away) or refuses
        fail(e)
    finally:
        store.close()
    kept = _spooled(store, started)
    if errors and not skip_bad:
        fail(MamoriError(f"{source}: {errors[0]}: stopped there; the {read} records"
                         f"{nx.said()} before it are imported"))  # fmt: skip
    if already:
        click.echo(f"note: the store held {already} tuples: counts of tuples in both added up",
                   err=True)  # fmt: skip
    msg = f"imported {read} records{nx.said()} from {source}"
    if errors:
        first = ", ".join(str(e.line) for e in errors[:10])
        more = " ..." if len(errors) > 10 else ""
        msg += f"; skipped {len(errors)} bad lines (lines {first}{more})"
    if kept:
        msg = f"read {read} records{nx.said()} from {source}: {kept}"
    click.echo(msg, err=True)


def _spooled(store: PdnsFull, since_ns: int) -> str:
    """What this import left in ClickHouse's spool ("" for nothing, and for SQLite):
    batches kept because the server is away (sent when it answers), said in words.
    Exits 2 when a batch of it was set aside as refused."""
    from mamori.store.pdns_spool import Spool, written_by

    spool = getattr(store, "spool", None)
    if not isinstance(spool, Spool):
        return ""
    waiting, refused = written_by(spool.dir, os.getpid(), since_ns)
    if refused:
        fail(MamoriError(f"ClickHouse refused {len(refused)} batches of this import: set aside"
                         f" in {spool.dir / 'rejected'} (the log says why)"))  # fmt: skip
    if not waiting:
        return ""
    tuples = nx = 0
    for path in waiting:
        try:
            b = spool.read(path)
        except (OSError, ValueError):
            continue
        tuples, nx = tuples + len(b.get("tuples") or ()), nx + len(b.get("nx") or ())
    rows = f" and {nx} NXDOMAIN rows" if nx else ""
    return (f"{tuples} tuples{rows} kept in the spool {spool.dir}, ClickHouse away: sent when"
            " it answers (by mamori serve, or the next pdns import or ingest)")  # fmt: skip


class _NxDiverter:
    """Takes the NXDOMAIN rows out of a stream of parsed lines and merges them into
    *store* through ``write``'s *nx*, every *batch* rows and at ``flush``."""

    def __init__(self, store: PdnsFull, batch: int) -> None:
        self.store, self.batch = store, batch
        self.pending: NxTuples = {}
        self.read = 0

    def records(self, lines: Iterable[Record | NxRecord]) -> Iterator[Record]:
        for r in lines:
            if isinstance(r, Record):
                yield r
                continue
            self.read += 1
            have = self.pending.get((r.rrname, r.rrtype))
            if have is None:
                self.pending[(r.rrname, r.rrtype)] = [r.time_first, r.time_last, r.count]
            else:
                have[0], have[1] = min(have[0], r.time_first), max(have[1], r.time_last)
                have[2] += r.count
            if self.read % self.batch == 0:
                self.flush()

    def flush(self) -> None:
        if self.pending:
            self.store.write({}, nx=self.pending)
            self.pending = {}

    def said(self) -> str:
        return f" and {self.read} NXDOMAIN rows" if self.read else ""


@contextlib.contextmanager
def _bar() -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress bar on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda what, done, total: None
        return
    from mamori.cli.util import progress

    with progress() as report:
        yield report  # type: ignore[misc]


def _lines(
    f: BinaryIO,
    fmt: str,
    skip_bad: bool,
    errors: list[formats.BadLineError],
    report: Callable[[int], None],
) -> Iterator[Record | NxRecord]:
    """Records of an NDJSON stream. A bad line goes into *errors*; it ends the stream
    unless *skip_bad*. *report* gets the bytes read every 10,000 lines."""
    done = 0
    for number, raw in enumerate(f, 1):
        done += len(raw)
        try:
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                raise formats.BadLineError(number, "not UTF-8") from None
            yield from formats.parse_line(text, fmt, number)
        except formats.BadLineError as e:
            errors.append(e)
            if not skip_bad:
                return
        if number % 10_000 == 0:
            report(done)
    report(done)
