"""The passive DNS store's shapes and the contract every backend keeps (SQLite, the
embedded default, ``store.pdns_sqlite``; ClickHouse for scale-out).

A tuple is one (rrname, rrtype, rdata, bailiwick) with time_first, time_last (UNIX
seconds, as DNSDB and the COF draft name them) and count (observations). Names are
lowercase presentation form with the trailing dot; rdata is presentation form.
Results of every lookup are ordered by time_last descending, then rrname, rrtype,
rdata, bailiwick, so that ``offset``/``limit`` pages are the same on every backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from mamori.store.base import WriterMark, WriterRun

# (rrname, rrtype, rdata, bailiwick) -> [time_first, time_last, count]
Tuples = dict[tuple[str, int, str, str], list[int]]
NxTuples = dict[tuple[str, int], list[int]]


@dataclass(frozen=True)
class FileProgress:
    """How much of one capture is committed (written with its tuples, in one transaction).

    ``file``: the capture's identity (hex digest); ``path``: where it was read;
    ``size``: bytes; ``messages``: DNS messages read from its start whose tuples are
    committed; ``complete``: the whole capture is.
    """

    file: str
    path: str
    size: int
    messages: int
    complete: bool


@dataclass(frozen=True)
class Record:
    rrname: str
    rrtype: int
    rdata: str
    bailiwick: str
    time_first: int
    time_last: int
    count: int


@dataclass(frozen=True)
class NxRecord:
    """NXDOMAIN answers aggregated (the ``nxdomain`` rows): ``rrname`` the name asked
    (lowercase, final dot), ``rrtype`` the type asked (QTYPE: ANY and other query types
    too), ``time_first``/``time_last`` UNIX seconds, ``count`` answers seen."""

    rrname: str
    rrtype: int
    time_first: int
    time_last: int
    count: int


@dataclass(frozen=True)
class Fences:
    """DNSDB time fences (UNIX seconds; None: no fence), every one inclusive, as dnsdbq
    documents ``-A`` ("on or after") and ``-B`` ("on or before"):

    - ``first_before``: time_first <= value; ``first_after``: time_first >= value;
    - ``last_before``: time_last <= value; ``last_after``: time_last >= value.

    dnsdbq ``-A T -B U`` (life overlaps [T, U]) is ``last_after=T, first_before=U``;
    with ``-c`` (whole life inside) ``first_after=T, last_before=U``.
    """

    first_before: int | None = None
    first_after: int | None = None
    last_before: int | None = None
    last_after: int | None = None

    def sql(self) -> tuple[str, list[int]]:
        """The ``AND ...`` SQL conditions and their arguments."""
        parts, args = [], []
        for col, op, v in (
            ("time_first", "<=", self.first_before),
            ("time_first", ">=", self.first_after),
            ("time_last", "<=", self.last_before),
            ("time_last", ">=", self.last_after),
        ):
            if v is not None:
                parts.append(f" AND {col} {op} ?")
                args.append(v)
        return "".join(parts), args


NO_FENCES = Fences()


class PdnsStore(Protocol):
    """What ingest, the sensors, ``mamori pdns`` and the COF/DNSDB APIs use."""

    def write(
        self,
        tuples: Tuples,
        nx: NxTuples | None = None,
        sensors: dict[str, tuple[int, int]] | None = None,
        progress: FileProgress | None = None,
        mark: WriterMark | None = None,
    ) -> None:
        """Merge aggregated tuples (min time_first, max time_last, summed count) with
        NXDOMAIN tuples, sensor counts (observations, last seen), the capture position
        *progress* and the tap's *mark*, all or nothing."""

    def begin_run(
        self, pid: int, noted: tuple[int, int] | None = None
    ) -> tuple[int, WriterRun | None]: ...

    def end_run(self, mark: WriterMark) -> None: ...

    def ingested(self, file: str) -> tuple[int, bool]:
        """(messages committed, complete) of a capture by identity; (0, False) if unseen.
        Raises StoreError when the store cannot tell (ClickHouse away, and no batch of
        that capture kept in the spool): never a guess that could count it twice."""

    def compact(self, before: int) -> tuple[int, int]:
        """Drop what was last seen before *before*; (tuples, names) removed."""

    def rrset(
        self,
        name: str,
        rrtype: int | None = None,
        bailiwick: str | None = None,
        fences: Fences = NO_FENCES,
        limit: int = 10000,
        offset: int = 0,
    ) -> list[Record]:
        """By owner: exact, ``*.example.com.`` (strictly below) or ``www.example.*``."""

    def rdata_ip(
        self, lo: bytes, hi: bytes, fences: Fences = NO_FENCES, limit: int = 10000, offset: int = 0
    ) -> list[Record]:
        """A/AAAA records whose address key (``pdns_keys.ip_key``, 16 bytes) is in [lo, hi]."""

    def rdata_name(
        self,
        name: str,
        rrtype: int | None = None,
        fences: Fences = NO_FENCES,
        limit: int = 10000,
        offset: int = 0,
    ) -> list[Record]:
        """Records whose rdata names *name* (exact or ``*.example.com.``)."""

    def keyword(self, word: str, limit: int = 1000) -> list[str]:
        """Names containing *word* (A-label or U-label); ValueError under 3 characters."""

    def names_first_last(self, names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """name -> (time_first, time_last, count) over all its tuples."""

    def nxdomain(self, name: str, limit: int = 1000) -> list[tuple[str, int, int, int, int]]:
        """(rrname, rrtype, time_first, time_last, count) of NXDOMAIN answers for *name*."""

    # Newly observed domains (discovery/nod.py)
    def names_first_seen_since(self, since: int, limit: int = 1_000_000) -> list[tuple[str, int]]:
        """(rrname, time_first) of the names whose first observation (the least
        time_first of all their tuples; NXDOMAIN answers not counted) is at or after
        *since* (UNIX seconds), earliest first, then by name; at most *limit*."""

    def earliest_below(self, domain: str) -> int | None:
        """The least time_first (UNIX seconds) of *domain* (``example.com.``) and of every
        name below it; None when none was observed."""

    def observed_since(self) -> int | None:
        """When the store began observing: the least time_first of all its tuples (UNIX
        seconds); None when it is empty."""

    def sensors(self) -> list[tuple[str, int, int]]:
        """(sensor, observations, last seen)."""

    def stats(self) -> tuple[int, int]:
        """(tuples, distinct names)."""

    def close(self) -> None: ...


class PdnsPortable(Protocol):
    """Moving a store between backends (``mamori pdns export`` / ``import``)."""

    def export_records(self) -> Iterator[Record]:
        """Every tuple, streamed (never the whole store in memory), in rrname order."""

    def export_nxdomain(self) -> Iterator[NxRecord]:
        """Every NXDOMAIN row, streamed, in (rrname, rrtype) order. (Imported through
        ``write``'s *nx*: they merge as tuples do.)"""

    def import_records(self, records: Iterable[Record], batch: int = 50_000) -> int:
        """Merge *records* as ``write`` does (min first, max last, summed count), committed
        every *batch*; the number of records read. Into an empty store the counts and
        times come out exactly as exported."""


class PdnsFull(PdnsStore, PdnsPortable, Protocol):
    """What both backends are: the lookups, the writes and the moves."""
