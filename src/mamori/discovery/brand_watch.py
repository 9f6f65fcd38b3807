"""One pass of the brand watch: read what was observed since the last pass (passive DNS
tuples, the query log's names) and what the feeds list, match it against the brands'
index, enrich the matches (seen times, addresses, asking clients) and merge them into
the matches store.

Passive DNS is read through the store's ``export_records`` and ``export_nxdomain``
(``PdnsPortable``, either backend: the tuples, then the NXDOMAIN rows), in rrname
order; a name whose latest tuple was last seen before the previous
pass's high-water mark (the latest time_last it read, less ``SLACK``) was matched then
and is skipped (matching is cheap; reading is the cost of a pass). Captures of older
traffic ingested later are found by a full pass (``full``: the service runs one every
``FULL_EVERY`` seconds, ``mamori brand report --full`` on demand). The query log is
the SQLite store's ``query_log`` table, read from the previous pass's time on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mamori.config import Config
from mamori.config.brands import BrandConfig
from mamori.discovery.brand import Brand, BrandIndex, Match
from mamori.discovery.brand_store import BrandMatches, Observed, StoredMatch
from mamori.errors import StoreError
from mamori.store.base import QueryLogReader
from mamori.store.pdns_base import NxRecord, Record
from mamori.store.querylog_sqlite import SQLiteQueryReader

log = logging.getLogger(__name__)

BATCH = 50_000  # distinct names matched at once
SLACK = 300  # seconds re-read before the high-water mark (writes in flight at the last pass)
ADDRESS_TYPES = (1, 28)


class RecordSource(Protocol):
    """Passive DNS as the watch reads it (``store.pdns_base.PdnsPortable``): the tuples,
    then the NXDOMAIN rows (a look-alike that only ever answered NXDOMAIN: parked,
    pre-registration probes, names of a campaign not live yet)."""

    def export_records(self) -> Iterator[Record]: ...

    def export_nxdomain(self) -> Iterator[NxRecord]: ...


@dataclass
class PassResult:
    """What one pass did: names read and matched, matches found (new ones listed),
    seconds spent."""

    names: int = 0
    matched: int = 0
    new: list[StoredMatch] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Seen:
    first: int
    last: int
    addresses: list[str] = field(default_factory=list)


def run_pass(
    index: BrandIndex,
    matches: BrandMatches,
    pdns: RecordSource | None,
    query_log: Path | QueryLogReader | None = None,
    full: bool = False,
    now: float | None = None,
    progress: Callable[[int], None] | None = None,
    feeds: Iterable[tuple[str, str]] = (),
) -> PassResult:
    """Match what was observed since the last pass (everything with *full*), merge the
    matches into *matches*; the new ones are in the result. *query_log*: the SQLite
    query-log file or a ``QueryLogReader`` (None: not read). *feeds*: (feed name, listed
    name) pairs, matched whole every pass (``feed_names``). *progress* is called with the
    names read so far."""
    started = time.monotonic()
    now = time.time() if now is None else now
    # brands not matched before (new, or changed): everything is read again
    full = full or matches.state(f"index:{index.fingerprint}") is None
    mark = None if full else matches.state("pdns_mark")
    qmark = None if full else matches.state("querylog_mark")
    result = PassResult()
    asked = _query_log(query_log, qmark)
    found: list[tuple[Match, Observed]] = []

    def flush(batch: dict[str, _Seen]) -> None:
        hits = index.match(batch)
        result.names += len(batch)
        for m in hits:
            s = batch.get(m.name + ".") or batch.get(m.name) or _Seen(0, 0)
            clients, qfirst, qlast = asked.get(m.name, ((), 0, 0))
            sources = ("pdns",) + (("querylog",) if clients else ())
            first = min((x for x in (s.first, qfirst) if x), default=0)
            seen = Observed(first, max(s.last, qlast), sources, tuple(s.addresses), tuple(clients))
            found.append((m, seen))
        if progress is not None:
            progress(result.names)

    high = 0
    if pdns is not None:
        batch: dict[str, _Seen] = {}
        for rec in pdns.export_records():
            high = max(high, rec.time_last)
            s = batch.get(rec.rrname)
            if s is None:
                if len(batch) >= BATCH:
                    flush(_fresh(batch, mark))
                    batch = {}
                s = batch[rec.rrname] = _Seen(rec.time_first, rec.time_last)
            else:
                s.first = min(s.first, rec.time_first)
                s.last = max(s.last, rec.time_last)
            if rec.rrtype in ADDRESS_TYPES and len(s.addresses) < 16:
                s.addresses.append(rec.rdata)
        flush(_fresh(batch, mark))
        # names passive DNS saw only as NXDOMAIN (none of their tuples matched above)
        resolved = {m.name for m, _ in found}
        nx: dict[str, _Seen] = {}
        for row in pdns.export_nxdomain():
            high = max(high, row.time_last)
            s = nx.get(row.rrname)
            if s is None:
                if len(nx) >= BATCH:
                    _flush_nx(index, _fresh(nx, mark), resolved, asked, found)
                    result.names += len(nx)
                    nx = {}
                nx[row.rrname] = _Seen(row.time_first, row.time_last)
            else:
                s.first, s.last = min(s.first, row.time_first), max(s.last, row.time_last)
        _flush_nx(index, _fresh(nx, mark), resolved, asked, found)
        result.names += len(nx)
    # names only the query log has (never resolved, or no passive DNS)
    in_pdns = {m.name for m, _ in found}
    qnames = [n for n in asked if n not in in_pdns]
    for m in index.match(qnames):
        if m.name in in_pdns:
            continue
        clients, qfirst, qlast = asked[m.name]
        found.append((m, Observed(int(qfirst), int(qlast), ("querylog",), (), tuple(clients))))
    result.names += len(qnames)
    # names the feeds list (a look-alike a phishing feed knows before anyone asked)
    listed: dict[str, list[str]] = {}
    for feed, name in feeds:
        listed.setdefault(name, []).append(feed)
    known = {m.name for m, _ in found}
    for m in index.match(listed):
        if m.name not in known:
            srcs = tuple(sorted({f"feed:{f}" for f in listed[m.name]}))
            found.append((m, Observed(0, 0, srcs, (), ())))
    result.names += len(listed)
    result.matched = len(found)
    result.new = matches.merge(found, now)
    if high:
        matches.set_state("pdns_mark", max(high - SLACK, mark or 0))
    matches.set_state("querylog_mark", now - SLACK)
    matches.set_state(f"index:{index.fingerprint}", now)
    result.seconds = time.monotonic() - started
    return result


def feed_names(cfg: Config) -> Iterator[tuple[str, str]]:
    """(feed name, listed name) of every enabled feed's compiled zone (QNAME rules; a
    ``*.`` wildcard gives the name below it; address and client rules and exceptions
    are left out)."""
    for feed in cfg.feeds:
        if not feed.enabled:
            continue
        path = cfg.store.path.parent / "feeds" / f"{feed.name}.rpz"
        try:
            f = path.open(encoding="utf-8", errors="replace")
        except OSError:
            continue
        with f:
            for line in f:
                if not line or line[0] in "$; \t@\n":
                    continue
                owner = line.split(None, 1)[0]
                if owner.endswith(".") or "rpz-" in owner or "mamori-" in owner:
                    continue  # absolute names are not the feed's; Response-IP, Client-IP
                if "rpz-passthru" in line:
                    continue  # an exception (allowed), not a listed name
                yield feed.name, owner.removeprefix("*.").lower()


def _flush_nx(
    index: BrandIndex,
    batch: dict[str, _Seen],
    resolved: set[str],
    asked: dict[str, tuple[Sequence[str], int, int]],
    found: list[tuple[Match, Observed]],
) -> None:
    """Match names passive DNS saw answered NXDOMAIN (source ``pdns-nxdomain``; no
    addresses: the report says "does not resolve"), but not those a tuple matched."""
    for m in index.match(batch):
        if m.name in resolved:
            continue
        s = batch.get(m.name + ".") or batch.get(m.name) or _Seen(0, 0)
        clients, qfirst, qlast = asked.get(m.name, ((), 0, 0))
        sources = ("pdns-nxdomain",) + (("querylog",) if clients else ())
        first = min((x for x in (s.first, qfirst) if x), default=0)
        found.append((m, Observed(first, max(s.last, qlast), sources, (), tuple(clients))))


def _fresh(batch: dict[str, _Seen], mark: float | None) -> dict[str, _Seen]:
    if mark is None:
        return batch
    return {n: s for n, s in batch.items() if s.last >= mark}


def _query_log(
    source: Path | QueryLogReader | None, since: float | None
) -> dict[str, tuple[Sequence[str], int, int]]:
    """qname (no final dot) -> (clients, first ask, last ask) from the query log (*source*:
    the SQLite file, or a ``QueryLogReader``)."""
    out: dict[str, tuple[Sequence[str], int, int]] = {}
    if source is None:
        return out
    if isinstance(source, Path):
        if not source.exists():
            return out
        source = SQLiteQueryReader(source)
    try:
        acc: dict[str, tuple[list[str], float, float]] = {}
        for qname, client, first, last in source.name_clients(since or 0):
            name = str(qname).rstrip(".").lower()
            clients, f, la = acc.get(name, ([], first, last))
            if len(clients) < 32:
                clients.append(str(client))
            acc[name] = (clients, min(f, first), max(la, last))
        for name, (clients, f, la) in acc.items():
            out[name] = (clients, int(f), int(la))
    except StoreError as e:  # an empty or older store: no query log table; a server away
        log.warning("brand watch: query log not read: %s", e)
    return out


WATCH_EVERY = 600.0  # seconds between passes of the running service's watch
FULL_EVERY = 86400.0  # seconds between its full passes
FIRST_AFTER = 30.0  # seconds after the start before the first pass (the start goes first)


def brand_index(brands: Sequence[BrandConfig]) -> BrandIndex:
    """The index of the configured brands (see ``brand.BrandIndex``)."""
    return BrandIndex([Brand(b.name, b.domains, b.words()) for b in brands])


class BrandWatcher(threading.Thread):
    """The running service's watch: a pass every *every* seconds (and at once when
    ``wake`` is called), with the brands of ``config()`` at that time. New matches go to
    every listener (the alert engine's ``on_brand``) as ``StoredMatch.as_json`` dicts."""

    def __init__(
        self,
        config: Callable[[], Config],
        pdns: RecordSource | None,
        matches: BrandMatches,
        query_log: Path | QueryLogReader | None,
        every: float = WATCH_EVERY,
        first_after: float = FIRST_AFTER,
    ) -> None:
        super().__init__(name="mamori-brand-watch", daemon=True)
        self.config = config
        self.pdns = pdns
        self.matches = matches
        self.query_log = query_log
        self.every = every
        self.first_after = first_after
        self.listeners: list[Callable[[list[dict[str, object]]], None]] = []
        self.last: PassResult | None = None
        self.passes = 0
        self._wake = threading.Event()
        self._stop_flag = threading.Event()
        self._index: tuple[tuple[BrandConfig, ...], BrandIndex] | None = None
        self._full = time.monotonic()  # the first pass is full only for brands not seen

    def wake(self) -> None:
        """Run a pass now (a brand was added from the console or the API)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop_flag.set()
        self._wake.set()
        self.join(30)

    def run(self) -> None:
        self._wake.wait(self.first_after)
        self._wake.clear()
        while not self._stop_flag.is_set():
            try:
                self.run_once()
            except Exception:  # a failed pass is logged; the next one runs as planned
                log.exception("brand watch: pass failed")
            self._wake.wait(self.every)
            self._wake.clear()

    def run_once(self) -> PassResult | None:
        brands = self.config().brands
        if not brands:
            return None
        if self._index is None or self._index[0] != brands:
            self._index = (brands, brand_index(brands))
        full = time.monotonic() - self._full >= FULL_EVERY
        result = run_pass(self._index[1], self.matches, self.pdns, self.query_log, full=full,
                          feeds=feed_names(self.config()))  # fmt: skip
        if full:
            self._full = time.monotonic()
        self.last = result
        self.passes += 1
        log.info("brand watch: %d names, %d matches, %d new (%.1f s)", result.names,
                 result.matched, len(result.new), result.seconds)  # fmt: skip
        if result.new:
            docs = [m.as_json() for m in result.new]
            for listener in self.listeners:
                listener(docs)
        return result


__all__ = ["BrandWatcher", "PassResult", "RecordSource", "brand_index", "feed_names", "run_pass"]
