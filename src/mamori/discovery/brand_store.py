"""The brand watch's matches, kept in ``<store dir>/brand.sqlite`` so that a match is
detected (and alerted) once, then only updated.

One row per (brand, observed name): its kind and scores as ``brand.Match`` gives them,
first/last seen (UNIX seconds, from passive DNS or the query log), whether and where
it resolves, the clients that asked, and when we found it. Writes are one transaction
each; readers (CLI, API, console) open their own connection.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mamori.discovery.brand import Match

_SCHEMA = """
CREATE TABLE IF NOT EXISTS brand_matches (
    brand TEXT NOT NULL,
    name TEXT NOT NULL,          -- observed name, A-labels, lowercase, no final dot
    registrable TEXT NOT NULL,   -- its registrable domain (Public Suffix List)
    target TEXT NOT NULL,        -- the brand domain it imitates
    kind TEXT NOT NULL,          -- brand.KINDS
    distance INTEGER NOT NULL,   -- Levenshtein distance of the registrable labels
    similarity REAL NOT NULL,    -- visual similarity 0..1 (skeletons)
    same_suffix INTEGER NOT NULL,
    time_first INTEGER NOT NULL, -- first seen (UNIX seconds); 0: unknown
    time_last INTEGER NOT NULL,  -- last seen (UNIX seconds)
    sources TEXT NOT NULL,       -- "pdns", "querylog", comma-joined
    addresses TEXT NOT NULL,     -- JSON list of A/AAAA rdata seen (at most 16)
    detected REAL NOT NULL,      -- when the watch found it (UNIX time)
    PRIMARY KEY (brand, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS brand_matches_detected ON brand_matches (detected);
-- the clients that asked (at most 32 per match), one row each: ``mamori store
-- forget-client`` deletes a client's rows here as in the query log
CREATE TABLE IF NOT EXISTS brand_clients (
    brand TEXT NOT NULL,
    name TEXT NOT NULL,
    client TEXT NOT NULL,        -- as the query log keeps it ([store] client_addresses)
    PRIMARY KEY (brand, name, client)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS brand_state (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
MAX_ADDRESSES = 16
MAX_CLIENTS = 32
_COLUMNS = (
    "brand, name, registrable, target, kind, distance, similarity, same_suffix, time_first,"
    " time_last, sources, addresses, (SELECT coalesce(json_group_array(client), '[]') FROM"
    " (SELECT client FROM brand_clients c WHERE c.brand = m.brand AND c.name = m.name"
    " ORDER BY client)), detected"
)


@dataclass(frozen=True)
class Observed:
    """What we know of a matched name besides the match: seen times (UNIX seconds),
    where it came from, the addresses it resolves to and the clients that asked."""

    time_first: int = 0
    time_last: int = 0
    sources: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredMatch:
    match: Match
    seen: Observed
    detected: float

    def as_json(self) -> dict[str, object]:
        m, s = self.match, self.seen
        return {
            "brand": m.brand,
            "name": m.name,
            "registrable": m.registrable,
            "target": m.target,
            "kind": m.kind,
            "distance": m.distance,
            "similarity": m.similarity,
            "same_suffix": m.same_suffix,
            "time_first": s.time_first,
            "time_last": s.time_last,
            "sources": list(s.sources),
            "resolves": bool(s.addresses),
            "addresses": list(s.addresses),
            "clients": list(s.clients),
            "detected": self.detected,
        }


def brand_db_path(store_path: Path) -> Path:
    """``brand.sqlite`` next to the query-log store file."""
    return store_path.parent / "brand.sqlite"


class BrandMatches:
    """The matches store (thread-safe: one lock around the connection)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def merge(self, found: Sequence[tuple[Match, Observed]], now: float) -> list[StoredMatch]:
        """Insert new matches and update the seen times, addresses and clients of known
        ones, in one transaction; return the new ones (detected at *now*)."""
        new: list[StoredMatch] = []
        with self.lock, self.db:
            for m, seen in found:
                # another pass (the console's, the service's) may have found it meanwhile:
                # the insert that lands makes it new, the other updates
                inserted = self.db.execute(
                    "INSERT INTO brand_matches VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT (brand, name) DO NOTHING",
                    (m.brand, m.name, m.registrable, m.target, m.kind, m.distance,
                     m.similarity, int(m.same_suffix), seen.time_first, seen.time_last,
                     ",".join(sorted(seen.sources)),
                     json.dumps(list(seen.addresses[:MAX_ADDRESSES])), now),
                ).rowcount  # fmt: skip
                self._add_clients(m, seen.clients)
                if inserted:
                    new.append(StoredMatch(m, seen, now))
                    continue
                row = self.db.execute(
                    "SELECT time_first, time_last, sources, addresses FROM brand_matches"
                    " WHERE brand = ? AND name = ?",
                    (m.brand, m.name),
                ).fetchone()
                first = min((x for x in (row[0], seen.time_first) if x), default=0)
                sources = sorted({*row[2].split(","), *seen.sources} - {""})
                addresses = _union(json.loads(row[3]), seen.addresses, MAX_ADDRESSES)
                self.db.execute(
                    "UPDATE brand_matches SET time_first = ?, time_last = ?, sources = ?,"
                    " addresses = ? WHERE brand = ? AND name = ?",
                    (first, max(row[1], seen.time_last), ",".join(sources),
                     json.dumps(addresses), m.brand, m.name),
                )  # fmt: skip
        return new

    def _add_clients(self, m: Match, clients: Sequence[str]) -> None:
        if not clients:
            return
        have = self.db.execute(
            "SELECT count(*) FROM brand_clients WHERE brand = ? AND name = ?", (m.brand, m.name)
        ).fetchone()[0]
        for c in clients[: max(0, MAX_CLIENTS - have)]:
            self.db.execute(
                "INSERT INTO brand_clients VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (m.brand, m.name, c),
            )

    def search(
        self,
        brand: str | None = None,
        since: float | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> tuple[list[StoredMatch], int]:
        """Matches (newest detection first, then name), optionally of one *brand* and
        detected or last seen at or after *since* (UNIX time); and how many in all."""
        where, args = "1 = 1", list[object]()
        if brand is not None:
            where += " AND brand = ?"
            args.append(brand)
        if since is not None:
            where += " AND (detected >= ? OR time_last >= ?)"
            args.extend((since, since))
        with self.lock:
            total = self.db.execute(
                f"SELECT count(*) FROM brand_matches WHERE {where}", args
            ).fetchone()[0]
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM brand_matches m WHERE {where}"
                " ORDER BY detected DESC, brand, name LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_row(r) for r in rows], int(total)

    def get(self, brand: str, name: str) -> StoredMatch | None:
        with self.lock:
            r = self.db.execute(
                f"SELECT {_COLUMNS} FROM brand_matches m WHERE brand = ? AND name = ?",
                (brand, name),
            ).fetchone()
        return None if r is None else _row(r)

    def state(self, key: str) -> float | None:
        """A value the watch keeps between runs (its high-water marks)."""
        with self.lock:
            r = self.db.execute("SELECT value FROM brand_state WHERE key = ?", (key,)).fetchone()
        return None if r is None else float(r[0])

    def set_state(self, key: str, value: float) -> None:
        with self.lock, self.db:
            self.db.execute(
                "INSERT INTO brand_state VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value",
                (key, value),
            )


def _union(old: list[str], new: Sequence[str], most: int) -> list[str]:
    out = list(old)
    for x in new:
        if x not in out and len(out) < most:
            out.append(x)
    return out


def _row(r: tuple[object, ...]) -> StoredMatch:
    (brand, name, reg, target, kind, dist, sim, same, first, last, sources, addrs, clients,
     detected) = r  # fmt: skip
    m = Match(str(brand), str(name), str(reg), str(target), str(kind), int(str(dist)),
              float(str(sim)), bool(same))  # fmt: skip
    seen = Observed(
        int(str(first)),
        int(str(last)),
        tuple(x for x in str(sources).split(",") if x),
        tuple(json.loads(str(addrs))),
        tuple(json.loads(str(clients))),
    )
    return StoredMatch(m, seen, float(str(detected)))


__all__ = ["BrandMatches", "Observed", "StoredMatch", "brand_db_path"]
