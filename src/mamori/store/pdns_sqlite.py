"""Passive DNS store on SQLite: aggregated tuples, built for an analyst's pivots.

One row per (rrname, rrtype, rdata, bailiwick) with time_first, time_last and
count. Secondary columns make each lookup an index range scan:

* ``rrname`` (unique key prefix): exact name, and ``www.example.*`` as the
  range [``www.example.``, ``www.example/``);
* ``rname``, the labels reversed (``com.example.www.``): ``*.example.com``
  as the range [``com.example.``, ``com.example/``);
* ``rkey``, A/AAAA addresses as 16 bytes (IPv4 mapped into ``::ffff:0:0/96``):
  an address, a CIDR network or a range as a BLOB range;
* ``rdname``, the name inside CNAME/NS/PTR/DNAME/MX/SRV rdata;
* ``names_fts``, an FTS5 trigram index over distinct names: keyword substring
  search ("mizuho") without a table scan.

One writer (batched upserts in a transaction, WAL), many readers. The shapes and the
contract every passive DNS store keeps are in ``store.pdns_base``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from mamori.store import runs
from mamori.store.base import WriterMark, WriterRun
from mamori.store.pdns_base import (
    NO_FENCES,
    Fences,
    FileProgress,
    NxTuples,
    Record,
    Tuples,
)
from mamori.store.pdns_keys import (
    ip_key,
    prefix_range,
    rdata_name,
    reverse_name,
    unicode_if_idn,
)

SCHEMA_VERSION = 1
CACHE_KB = 256 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rrset (
    id INTEGER PRIMARY KEY,
    rrname TEXT NOT NULL,
    rrtype INTEGER NOT NULL,
    rdata TEXT NOT NULL,
    bailiwick TEXT NOT NULL DEFAULT '',
    rname TEXT NOT NULL,
    rkey BLOB,
    rdname TEXT,
    time_first INTEGER NOT NULL,
    time_last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    UNIQUE (rrname, rrtype, rdata, bailiwick)
);
CREATE INDEX IF NOT EXISTS rrset_rname ON rrset (rname);
CREATE INDEX IF NOT EXISTS rrset_rkey ON rrset (rkey) WHERE rkey IS NOT NULL;
CREATE INDEX IF NOT EXISTS rrset_rdname ON rrset (rdname) WHERE rdname IS NOT NULL;
CREATE TABLE IF NOT EXISTS names (
    id INTEGER PRIMARY KEY,
    rrname TEXT NOT NULL UNIQUE,
    uname TEXT NOT NULL  -- U-labels of an IDN name; '' for the others
);
CREATE VIRTUAL TABLE IF NOT EXISTS names_fts USING fts5 (
    rrname, uname, content='names', content_rowid='id', tokenize='trigram'
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nxdomain (
    rrname TEXT NOT NULL,
    rrtype INTEGER NOT NULL,
    time_first INTEGER NOT NULL,
    time_last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (rrname, rrtype)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pdns_ingest (
    file TEXT PRIMARY KEY,  -- capture identity: ingest.file_identity (content, not path)
    path TEXT NOT NULL,  -- where it was last read from (information only)
    size INTEGER NOT NULL,  -- bytes
    messages INTEGER NOT NULL,  -- DNS messages of the capture whose tuples are committed
    complete INTEGER NOT NULL,  -- 1: the whole capture is in the store
    updated INTEGER NOT NULL  -- UNIX seconds
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sensors (
    sensor TEXT PRIMARY KEY,
    observations INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
"""

_UPSERT_NX = """
INSERT INTO nxdomain VALUES (?, ?, ?, ?, ?)
ON CONFLICT (rrname, rrtype) DO UPDATE SET
    time_first = min(time_first, excluded.time_first),
    time_last = max(time_last, excluded.time_last),
    count = count + excluded.count
"""
_UPSERT_SENSOR = """
INSERT INTO sensors VALUES (?, ?, ?)
ON CONFLICT (sensor) DO UPDATE SET
    observations = observations + excluded.observations,
    last_seen = max(last_seen, excluded.last_seen)
"""


class PdnsSQLite:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # Index pages stay in memory: batched upserts touch pages all over the indexes.
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KB}")
        if not readonly:
            self.db.executescript(_SCHEMA)
            self.db.execute(runs.ddl("tap_runs"))  # the resolver tap's crash accounting
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------- writing
    def write(
        self,
        tuples: Tuples,
        nx: NxTuples | None = None,
        sensors: dict[str, tuple[int, int]] | None = None,
        progress: FileProgress | None = None,
        mark: WriterMark | None = None,
    ) -> None:
        """Upsert aggregated tuples (and NXDOMAIN tuples, sensor counts) in one transaction,
        with *progress*, the capture position these tuples bring the store to (a crash
        leaves both or neither: a resumed ingest counts nothing twice); *mark*: the
        resolver tap's counts as of this commit (store/runs.py)."""
        rnames: dict[str, str] = {}  # names repeat across types: reverse each once
        for name, _t, _r, _b in tuples:
            if name not in rnames:
                rnames[name] = reverse_name(name)
        rows = [
            (name, rtype, rdata, bw, rnames[name],
             _rkey(rtype, rdata) if rtype in (1, 28) else None,
             rdata_name(rtype, rdata), first, last, n)
            for (name, rtype, rdata, bw), (first, last, n) in tuples.items()
        ]  # fmt: skip
        names = sorted((name, unicode_if_idn(name)) for name in rnames)
        with self.lock, self.db:
            self.db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS staging (rrname, rrtype, rdata, bailiwick,"
                " rname, rkey, rdname, time_first, time_last, count)"
            )
            self.db.executemany("INSERT INTO staging VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            self.db.execute(
                "INSERT INTO rrset (rrname, rrtype, rdata, bailiwick, rname, rkey, rdname,"
                " time_first, time_last, count) SELECT * FROM staging WHERE true"
                " ORDER BY rrname, rrtype, rdata, bailiwick"
                " ON CONFLICT (rrname, rrtype, rdata, bailiwick) DO UPDATE SET"
                " time_first = min(time_first, excluded.time_first),"
                " time_last = max(time_last, excluded.time_last), count = count + excluded.count"
            )
            self.db.execute("DELETE FROM staging")
            self.db.executemany("INSERT OR IGNORE INTO names (rrname, uname) VALUES (?, ?)", names)
            # The keyword index takes the new names in one statement (3x faster
            # than a row trigger): the names above its high-water mark.
            fts_mark = self.db.execute("SELECT value FROM meta WHERE key = 'fts'").fetchone()
            self.db.execute(
                "INSERT INTO names_fts (rowid, rrname, uname)"
                " SELECT id, rrname, uname FROM names WHERE id > ?",
                (fts_mark[0] if fts_mark else 0,),
            )
            self.db.execute(
                "INSERT OR REPLACE INTO meta"
                " VALUES ('fts', (SELECT coalesce(max(id), 0) FROM names))"
            )
            if nx:
                self.db.executemany(
                    _UPSERT_NX, [(n, t, f, la, c) for (n, t), (f, la, c) in nx.items()]
                )
            if sensors:
                self.db.executemany(
                    _UPSERT_SENSOR, [(s, n, last) for s, (n, last) in sensors.items()]
                )
            if mark is not None:
                runs.mark(self.db, "tap_runs", mark)
            if progress is not None:
                p = progress
                self.db.execute(
                    "INSERT OR REPLACE INTO pdns_ingest VALUES (?, ?, ?, ?, ?, ?)",
                    (p.file, p.path, p.size, p.messages, int(p.complete), int(time.time())),
                )

    def begin_run(
        self, pid: int, noted: tuple[int, int] | None = None
    ) -> tuple[int, WriterRun | None]:
        """Record the start of a resolver tap run (``tap_runs``); (its id, the previous
        run or None). Raises sqlite3.Error."""
        with self.lock, self.db:
            return runs.begin(self.db, "tap_runs", pid, noted)

    def end_run(self, mark: WriterMark) -> None:
        """The tap stopped cleanly after its final drain."""
        with self.lock, self.db:
            runs.mark(self.db, "tap_runs", mark, clean=True)

    def ingested(self, file: str) -> tuple[int, bool]:
        """(messages committed, complete) of the capture with identity *file*; (0, False)
        for one never seen."""
        row = self.db.execute(
            "SELECT messages, complete FROM pdns_ingest WHERE file = ?", (file,)
        ).fetchone()
        return (int(row[0]), bool(row[1])) if row else (0, False)

    def compact(self, before: int) -> tuple[int, int]:
        """Drop tuples (and NXDOMAIN rows) last seen before *before*; names no tuple
        uses any more leave the keyword index, which is rebuilt. (tuples, names) removed."""
        with self.lock, self.db:
            tuples = self.db.execute("DELETE FROM rrset WHERE time_last < ?", (before,)).rowcount
            self.db.execute("DELETE FROM nxdomain WHERE time_last < ?", (before,))
            names = self.db.execute(
                "DELETE FROM names WHERE NOT EXISTS"
                " (SELECT 1 FROM rrset WHERE rrset.rrname = names.rrname)"
            ).rowcount
            if names:
                self.db.execute("INSERT INTO names_fts (names_fts) VALUES ('rebuild')")
                # new names get ids above the current maximum: the high-water mark follows
                self.db.execute(
                    "INSERT OR REPLACE INTO meta"
                    " VALUES ('fts', (SELECT coalesce(max(id), 0) FROM names))"
                )
        return int(tuples), int(names)

    # ------------------------------------------------------------- reading
    def rrset(
        self,
        name: str,
        rrtype: int | None = None,
        bailiwick: str | None = None,
        fences: Fences = NO_FENCES,
        limit: int = 10000,
        offset: int = 0,
    ) -> list[Record]:
        """By owner name: exact, ``*.example.com`` (below it) or ``www.example.*``."""
        name = name.lower()
        args: list[object]
        if name.startswith("*."):
            lo, hi = prefix_range(reverse_name(name[2:]))
            where, args = "rname >= ? AND rname < ? AND rname != ?", [lo, hi, lo]
            # (a name's own rname is the prefix itself: "below" excludes it)
        elif name.endswith(".*") or name.endswith(".*."):
            lo, hi = prefix_range(name[: name.rindex("*")])
            where, args = "rrname >= ? AND rrname < ?", [lo, hi]
        else:
            where, args = "rrname = ?", [name if name.endswith(".") else name + "."]
        return self._select(where, args, rrtype, bailiwick, fences, limit, offset)

    def rdata_ip(
        self, lo: bytes, hi: bytes, fences: Fences = NO_FENCES, limit: int = 10000, offset: int = 0
    ) -> list[Record]:
        return self._select("rkey BETWEEN ? AND ?", [lo, hi], None, None, fences, limit, offset)

    def rdata_name(
        self,
        name: str,
        rrtype: int | None = None,
        fences: Fences = NO_FENCES,
        limit: int = 10000,
        offset: int = 0,
    ) -> list[Record]:
        """Records whose rdata names *name* (CNAME/NS/PTR/DNAME targets, MX, SRV)."""
        name = name.lower()
        args: list[object]
        if name.startswith("*."):
            # names below: rdname ends with ".example.com." (no index: a scan of rdname)
            where, args = "rdname LIKE ? ESCAPE '\\'", ["%." + _like(name[2:].rstrip(".")) + "."]
        else:
            where, args = "rdname = ?", [name if name.endswith(".") else name + "."]
        return self._select(where, args, rrtype, None, fences, limit, offset)

    def keyword(self, word: str, limit: int = 1000) -> list[str]:
        """Observed names containing *word* in their A-label or U-label form (3+ characters:
        the trigram index)."""
        word = word.lower()
        if len(word) < 3:
            raise ValueError("a keyword needs at least 3 characters")
        phrase = '"' + word.replace('"', '""') + '"'
        rows = self.db.execute(
            "SELECT names.rrname FROM names_fts JOIN names ON names.id = names_fts.rowid"
            " WHERE names_fts MATCH ? LIMIT ?",
            (phrase, limit),
        )
        return [r[0] for r in rows]

    def names_first_last(self, names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """(time_first, time_last, count) over all types per name."""
        out: dict[str, tuple[int, int, int]] = {}
        for chunk in _chunks(list(names), 500):
            marks = ",".join("?" * len(chunk))
            for name, first, last, n in self.db.execute(
                "SELECT rrname, min(time_first), max(time_last), sum(count) FROM rrset"
                f" WHERE rrname IN ({marks}) GROUP BY rrname",
                chunk,
            ):
                out[name] = (first, last, n)
        return out

    def nxdomain(self, name: str, limit: int = 1000) -> list[tuple[str, int, int, int, int]]:
        return list(
            self.db.execute(
                "SELECT rrname, rrtype, time_first, time_last, count FROM nxdomain"
                " WHERE rrname = ? LIMIT ?",
                (name.lower().rstrip(".") + ".", limit),
            )
        )

    # ------------------------------------------- newly observed domains (discovery/nod.py)
    def names_first_seen_since(self, since: int, limit: int = 1_000_000) -> list[tuple[str, int]]:
        """Names first observed at or after *since* (see ``PdnsStore``): the tuples first
        seen since then (a scan: there is no time_first index), each name's least
        time_first over all its tuples by the unique index."""
        rows = self.db.execute(
            "SELECT rrname, min(time_first) AS first FROM rrset WHERE rrname IN"
            " (SELECT rrname FROM rrset WHERE time_first >= ?)"
            " GROUP BY rrname HAVING first >= ? ORDER BY first, rrname LIMIT ?",
            (since, since, limit),
        )
        return [(str(n), int(f)) for n, f in rows]

    def earliest_below(self, domain: str) -> int | None:
        """The least time_first of *domain* and the names below it (the rname index)."""
        lo, hi = prefix_range(reverse_name(domain.lower().rstrip(".") + "."))
        row = self.db.execute(
            "SELECT min(time_first) FROM rrset WHERE rname >= ? AND rname < ?", (lo, hi)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def observed_since(self) -> int | None:
        """The least time_first of the store (a scan)."""
        row = self.db.execute("SELECT min(time_first) FROM rrset").fetchone()
        return None if row[0] is None else int(row[0])

    def sensors(self) -> list[tuple[str, int, int]]:
        return list(self.db.execute("SELECT sensor, observations, last_seen FROM sensors"))

    def stats(self) -> tuple[int, int]:
        """(tuples, distinct names)"""
        t = self.db.execute("SELECT count(*) FROM rrset").fetchone()[0]
        n = self.db.execute("SELECT count(*) FROM names").fetchone()[0]
        return int(t), int(n)

    def export_records(self) -> Iterator[Record]:
        """Every tuple in rrname order, read in pages (never the whole store in memory)."""
        last: tuple[str, int, str, str] = ("", -1, "", "")
        while True:
            with self.lock:
                rows = self.db.execute(
                    "SELECT rrname, rrtype, rdata, bailiwick, time_first, time_last, count"
                    " FROM rrset WHERE (rrname, rrtype, rdata, bailiwick) > (?, ?, ?, ?)"
                    " ORDER BY rrname, rrtype, rdata, bailiwick LIMIT 50000",
                    last,
                ).fetchall()
            if not rows:
                return
            for r in rows:
                yield Record(*r)
            last = rows[-1][:4]

    def _select(
        self,
        where: str,
        args: list[object],
        rrtype: int | None,
        bailiwick: str | None,
        fences: Fences,
        limit: int,
        offset: int,
    ) -> list[Record]:
        if rrtype is not None:
            where += " AND rrtype = ?"
            args.append(rrtype)
        if bailiwick is not None:
            where += " AND bailiwick = ?"
            args.append(bailiwick.lower().rstrip(".") + ".")
        extra, fargs = fences.sql()
        sql = (
            "SELECT rrname, rrtype, rdata, bailiwick, time_first, time_last, count FROM rrset"
            f" WHERE {where}{extra}"
            " ORDER BY time_last DESC, rrname, rrtype, rdata, bailiwick LIMIT ? OFFSET ?"
        )
        rows = self.db.execute(sql, [*args, *fargs, limit, offset])
        return [Record(*r) for r in rows]


def _rkey(rrtype: int, rdata: str) -> bytes | None:
    return ip_key(rdata) if rrtype in (1, 28) else None


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = ["NO_FENCES", "Fences", "FileProgress", "NxTuples", "PdnsSQLite", "Record", "Tuples"]
