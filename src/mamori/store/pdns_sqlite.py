"""Passive DNS store on SQLite: aggregated tuples, built for an analyst's pivots.

One row per (rrname, rrtype, rdata, bailiwick) with time_first, time_last and
count, in ``rr`` (schema in ``store.pdns_schema``: integer name ids, addresses as
bytes, no rowid). Each lookup is an index range scan or a trigram index probe:

* exact name: ``names.rname`` (labels reversed) -> name id -> ``rr`` primary key;
* ``*.example.com``: the range [``com.example.``, ``com.example/``) of ``names.rname``;
* ``www.example.*``: the FTS5 trigram index over names, each candidate checked exactly;
* an address, a CIDR network or a range: ``rr_ip`` (4/16-byte rdata) and ``rr_aux``;
* the name inside CNAME/NS/PTR/DNAME rdata: ``rr_rdname``; MX/SRV targets: ``rr_aux``;
* ``names_fts``, the trigram index: keyword substring search ("mizuho").

One writer (batched upserts in a transaction, WAL), many readers. The shapes and the
contract every passive DNS store keeps are in ``store.pdns_base``. A view ``rrset``
shows the tuples with text columns, as schema 1 stored them (for ad-hoc SQL on a
connection of this class, which has the view's functions).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from mamori.store import pdns_schema as schema
from mamori.store import runs
from mamori.store.base import WriterMark, WriterRun
from mamori.store.pdns_base import (
    NO_FENCES,
    Fences,
    FileProgress,
    NxRecord,
    NxTuples,
    Record,
    Tuples,
)
from mamori.store.pdns_keys import prefix_range, reverse_name, unicode_if_idn

SCHEMA_VERSION = schema.SCHEMA_VERSION

CACHE_KB = 256 * 1024
WAL_LIMIT = 64 << 20  # bytes
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
_COLUMNS = "n.rname, r.rrtype, r.rdata, r.bailiwick, r.time_first, r.time_last, r.count"
_ORDER = "pdns_fwd(n.rname), r.rrtype, pdns_rdata(r.rrtype, r.rdata), r.bailiwick"
log = logging.getLogger(__name__)


class PdnsSQLite:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        """Open (and create unless *readonly*) the store at *path*; a schema 1 store is
        migrated to the current schema first (one transaction, then VACUUM: 219 s and 15 s
        for 10M tuples on the 2-core dev machine). Raises sqlite3.Error."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.lock = threading.Lock()
        schema.connect_functions(self.db)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # A batch of 500,000 tuples grows the WAL by hundreds of MB; once checkpointed it
        # is cut back to this, instead of keeping its largest size on disk for good.
        self.db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        # Index pages stay in memory: batched upserts touch pages all over the indexes.
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KB}")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == 1:
            log.warning("%s: migrating the passive DNS store to schema %d", path, SCHEMA_VERSION)
            with self.lock:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    schema.migrate_1(self.db)
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                except BaseException:
                    self.db.rollback()
                    raise
                self.db.commit()
                try:  # give the space back: the file keeps its schema 1 size until then
                    self.db.execute("VACUUM")
                except sqlite3.Error as e:
                    log.warning("%s: VACUUM after the migration failed (%s)", path, e)
        if not readonly:
            for stmt in schema.statements():
                self.db.execute(stmt)
            self.db.execute(runs.ddl("tap_runs"))  # the resolver tap's crash accounting
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.db.commit()

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
        encode = schema.encode
        rnames: dict[str, str] = {}  # names repeat across types: reverse each once
        rows = []
        for (name, rtype, rdata, bw), (first, last, n) in tuples.items():
            rname = rnames.get(name)
            if rname is None:
                rname = rnames[name] = reverse_name(name)
            value, aux = encode(rtype, rdata)
            rows.append((rname, rtype, value, bw, aux, first, last, n))
        names = sorted((rname, unicode_if_idn(name)) for name, rname in rnames.items())
        with self.lock, self.db:
            self.db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS staging (rname, rrtype, rdata, bailiwick,"
                " aux, time_first, time_last, count)"
            )
            self.db.executemany("INSERT OR IGNORE INTO names (rname, uname) VALUES (?, ?)", names)
            self.db.executemany("INSERT INTO staging VALUES (?,?,?,?,?,?,?,?)", rows)
            self.db.execute(
                "INSERT INTO rr SELECT n.id, s.rrtype, s.rdata, s.bailiwick, s.aux,"
                " s.time_first, s.time_last, s.count"
                " FROM staging s JOIN names n ON n.rname = s.rname WHERE true"
                " ORDER BY 1, 2, 3, 4"
                " ON CONFLICT (name, rrtype, rdata, bailiwick) DO UPDATE SET"
                " time_first = min(time_first, excluded.time_first),"
                " time_last = max(time_last, excluded.time_last), count = count + excluded.count"
            )
            self.db.execute("DELETE FROM staging")
            # The keyword index takes the new names in one statement (3x faster
            # than a row trigger): the names above its high-water mark.
            fts_mark = self.db.execute("SELECT value FROM meta WHERE key = 'fts'").fetchone()
            self.db.execute(
                "INSERT INTO names_fts (rowid, rname, uname)"
                " SELECT id, rname, uname FROM names WHERE id > ?",
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
            tuples = self.db.execute("DELETE FROM rr WHERE time_last < ?", (before,)).rowcount
            self.db.execute("DELETE FROM nxdomain WHERE time_last < ?", (before,))
            names = self.db.execute(
                "DELETE FROM names WHERE NOT EXISTS (SELECT 1 FROM rr WHERE rr.name = names.id)"
            ).rowcount
            if names:
                self.db.execute("INSERT INTO names_fts (names_fts) VALUES ('rebuild')")
                # new names get ids above the current maximum: the high-water mark follows
                self.db.execute(
                    "INSERT OR REPLACE INTO meta"
                    " VALUES ('fts', (SELECT coalesce(max(id), 0) FROM names))"
                )
        return int(tuples), int(names)

    # ------------------------------------------------------------- moving
    def export_records(self) -> Iterator[Record]:
        """Every tuple, streamed in (rrname, rrtype, rdata, bailiwick) order (SQLite's
        sorter spills to temporary files: memory stays bounded)."""
        cur = self.db.execute(
            f"SELECT {_COLUMNS} FROM rr r JOIN names n ON n.id = r.name ORDER BY {_ORDER}"
        )
        decode = schema.decode
        for rname, rtype, rdata, bw, first, last, n in cur:
            yield Record(reverse_name(rname), rtype, decode(rtype, rdata), bw, first, last, n)

    def export_nxdomain(self) -> Iterator[NxRecord]:
        """Every NXDOMAIN row, streamed in (rrname, rrtype) order."""
        cur = self.db.execute(
            "SELECT rrname, rrtype, time_first, time_last, count FROM nxdomain"
            " ORDER BY rrname, rrtype"
        )
        for row in cur:
            yield NxRecord(*row)

    def import_records(self, records: Iterable[Record], batch: int = 50_000) -> int:
        """Merge *records* as ``write`` does (min time_first, max time_last, summed count),
        committed every *batch* records; the number of records read. Names are lowercased
        with a final dot, as the store keeps them. Importing the same records twice doubles
        their counts. Raises ValueError (bad record) or sqlite3.Error; what was committed
        before stays."""
        pending: Tuples = {}
        read = 0
        for r in records:
            name = r.rrname.lower().rstrip(".") + "."
            bw = r.bailiwick.lower().rstrip(".") + "." if r.bailiwick else ""
            if r.time_first > r.time_last or r.count < 0:
                raise ValueError(f"{r.rrname}: time_first after time_last, or a negative count")
            key = (name, r.rrtype, r.rdata, bw)
            have = pending.get(key)
            if have is None:
                pending[key] = [r.time_first, r.time_last, r.count]
            else:
                have[0], have[1] = min(have[0], r.time_first), max(have[1], r.time_last)
                have[2] += r.count
            read += 1
            if read % batch == 0:
                self.write(pending)
                pending = {}
        if pending:
            self.write(pending)
        return read

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
            # strictly below: a name's own rname is the prefix itself
            inner = (
                "SELECT * FROM rr WHERE name IN"
                " (SELECT id FROM names WHERE rname > ? AND rname < ?)"
            )
            args = [lo, hi]
        elif name.endswith(".*") or name.endswith(".*."):
            prefix = name[: name.rindex("*")]
            ids, args = _candidates(prefix)
            inner = (
                f"SELECT r.* FROM rr r JOIN names n ON n.id = r.name WHERE r.name IN ({ids})"
                " AND substr(pdns_fwd(n.rname), 1, ?) = ?"
            )
            args += [len(prefix), prefix]
        else:
            full = name if name.endswith(".") else name + "."
            inner = "SELECT * FROM rr WHERE name = (SELECT id FROM names WHERE rname = ?)"
            args = [reverse_name(full)]
        return self._select(inner, args, rrtype, bailiwick, fences, limit, offset)

    def rdata_ip(
        self, lo: bytes, hi: bytes, fences: Fences = NO_FENCES, limit: int = 10000, offset: int = 0
    ) -> list[Record]:
        branches: list[str] = []
        args: list[object] = []
        for cond, a, b in schema.ip_parts(lo, hi):
            branches.append(
                f"SELECT * FROM rr WHERE rrtype IN (1, 28) AND rdata BETWEEN ? AND ? AND {cond}"
            )
            args += [a, b]
        # addresses not written in canonical form: their key in aux
        branches.append("SELECT * FROM rr WHERE aux BETWEEN ? AND ? AND rrtype IN (1, 28)")
        args += [lo, hi]
        return self._select(" UNION ALL ".join(branches), args, None, None, fences, limit, offset)

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
            # names below: the target ends with ".example.com." (no index: a scan)
            target = (
                "CASE WHEN aux IS NOT NULL THEN aux WHEN rrtype IN (15, 33)"
                " THEN substr(rdata, 1, instr(rdata, char(1)) - 1) ELSE rdata END"
            )
            inner = (
                f"SELECT * FROM rr WHERE rrtype IN {schema.NAMED_TYPES}"
                f" AND {target} LIKE ? ESCAPE '\\'"
            )
            args = ["%." + _like(name[2:].rstrip(".")) + "."]
        else:
            full = name if name.endswith(".") else name + "."
            named = f"SELECT * FROM rr WHERE rrtype IN {schema.NAMED_TYPES}"
            inner = (
                f"{named} AND rdata = ? AND rrtype IN {schema.NAME_TYPES}"
                f" UNION ALL {named} AND rdata > ? AND rdata < ?"  # MX/SRV: target first
                " UNION ALL SELECT * FROM rr WHERE aux = ?"
            )
            args = [full, full + schema.SEP, full + chr(2), full]
        return self._select(inner, args, rrtype, None, fences, limit, offset)

    def keyword(self, word: str, limit: int = 1000) -> list[str]:
        """Observed names containing *word* in their A-label or U-label form (3+ characters:
        the trigram index)."""
        word = word.lower()
        if len(word) < 3:
            raise ValueError("a keyword needs at least 3 characters")
        # names are kept with their labels reversed: "bank.co" is "co....bank" there
        pieces = word.split(".")
        rpattern = "%" + pieces[-1] + "%"
        if len(pieces) > 1:  # the label ending pieces[0] comes after the whole ones
            rpattern += "".join("." + x for x in reversed(pieces[1:-1])) + ".%" + pieces[0] + "%"
        rows = self.db.execute(
            "SELECT rname, uname FROM names WHERE id IN"
            " (SELECT rowid FROM names_fts WHERE rname LIKE ?"
            " UNION SELECT rowid FROM names_fts WHERE uname LIKE ?) ORDER BY id",
            (rpattern, "%" + word + "%"),
        )
        out: list[str] = []  # "_" and "%" match more in LIKE: this check is exact
        for rname, uname in rows:
            name = reverse_name(rname)
            if word in name or word in uname.lower():
                out.append(name)
                if len(out) >= limit:
                    break
        return out

    def names_first_last(self, names: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """(time_first, time_last, count) over all types per name."""
        out: dict[str, tuple[int, int, int]] = {}
        for chunk in _chunks(list(names), 500):
            marks = ",".join("?" * len(chunk))
            for rname, first, last, n in self.db.execute(
                "SELECT n.rname, min(r.time_first), max(r.time_last), sum(r.count)"
                f" FROM names n JOIN rr r ON r.name = n.id WHERE n.rname IN ({marks})"
                " GROUP BY n.rname",
                [reverse_name(x) for x in chunk],
            ):
                out[reverse_name(rname)] = (first, last, n)
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
        time_first over all its tuples by the primary key."""
        rows = self.db.execute(
            "SELECT pdns_fwd(names.rname) AS rrname, min(rr.time_first) AS first"
            " FROM rr JOIN names ON names.id = rr.name"
            " WHERE rr.name IN (SELECT name FROM rr WHERE time_first >= ?)"
            " GROUP BY rr.name HAVING first >= ? ORDER BY first, rrname LIMIT ?",
            (since, since, limit),
        )
        return [(str(n), int(f)) for n, f in rows]

    def earliest_below(self, domain: str) -> int | None:
        """The least time_first of *domain* and the names below it (the rname index)."""
        lo, hi = prefix_range(reverse_name(domain.lower().rstrip(".") + "."))
        row = self.db.execute(
            "SELECT min(rr.time_first) FROM names JOIN rr ON rr.name = names.id"
            " WHERE names.rname >= ? AND names.rname < ?",
            (lo, hi),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def observed_since(self) -> int | None:
        """The least time_first of the store (a scan)."""
        row = self.db.execute("SELECT min(time_first) FROM rr").fetchone()
        return None if row[0] is None else int(row[0])

    def sensors(self) -> list[tuple[str, int, int]]:
        return list(self.db.execute("SELECT sensor, observations, last_seen FROM sensors"))

    def stats(self) -> tuple[int, int]:
        """(tuples, distinct names)"""
        t = self.db.execute("SELECT count(*) FROM rr").fetchone()[0]
        n = self.db.execute("SELECT count(*) FROM names").fetchone()[0]
        return int(t), int(n)

    def _select(
        self,
        inner: str,
        args: list[object],
        rrtype: int | None,
        bailiwick: str | None,
        fences: Fences,
        limit: int,
        offset: int,
    ) -> list[Record]:
        """The tuples of *inner* (a SELECT of ``rr`` rows), filtered and in contract order."""
        where = ""
        if rrtype is not None:
            where += " AND r.rrtype = ?"
            args.append(rrtype)
        if bailiwick is not None:
            where += " AND r.bailiwick = ?"
            args.append(bailiwick.lower().rstrip(".") + ".")
        extra, fargs = fences.sql()
        sql = (
            f"SELECT {_COLUMNS} FROM ({inner}) r JOIN names n ON n.id = r.name"
            f" WHERE true{where}{extra.replace(' time_', ' r.time_')}"
            f" ORDER BY r.time_last DESC, {_ORDER} LIMIT ? OFFSET ?"
        )
        decode = schema.decode
        return [
            Record(reverse_name(rname), rtype, decode(rtype, rdata), bw, first, last, n)
            for rname, rtype, rdata, bw, first, last, n in self.db.execute(
                sql, [*args, *fargs, limit, offset]
            )
        ]


def _candidates(prefix: str) -> tuple[str, list[object]]:
    """A subquery of the ids of names that may start with *prefix* (``www.example.``; the
    caller checks each exactly), and its arguments. The trigram index is asked for the
    trigrams of the prefix's most telling label (the longest that is not a common host
    label: "www" is in a third of all names, and a trigram that common makes the probe
    read all of them), or for the whole prefix when no label has 3 characters."""
    labels = [x for x in prefix.split(".") if len(x) >= 3]
    telling = [x for x in labels if x not in _COMMON] or labels
    if not telling:
        return "SELECT rowid FROM names_fts WHERE rname LIKE ?", ["%" + reverse_name(prefix)]
    label = max(telling, key=len)
    grams = [label[i : i + 3] for i in range(len(label) - 2)]
    step = max(1, len(grams) // _GRAMS)
    query = " ".join('"' + g.replace('"', '""') + '"' for g in grams[::step][:_GRAMS])
    return "SELECT rowid FROM names_fts WHERE names_fts MATCH ?", [query]


_GRAMS = 8  # trigrams asked at most (each one more doclist to step through)
_COMMON = frozenset(["www", "mail", "smtp", "api", "cdn", "static", "login", "webmail", "ftp"])


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


__all__ = ["NO_FENCES", "Fences", "FileProgress", "NxTuples", "PdnsSQLite", "Record", "Tuples"]
