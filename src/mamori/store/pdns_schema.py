"""The passive DNS SQLite schema (version 2), its value codecs, and the migration from 1.

Version 2 keeps each tuple in ``rr``, a WITHOUT ROWID table whose primary key
(name id, rrtype, rdata, bailiwick) is the only copy of the key: no rowid, no
separate unique index. Names are stored once, in ``names``, with their labels
reversed (``com.example.www.``): one index serves an exact name and every name
below a domain. Canonical A/AAAA addresses are stored as their 4/16 bytes, so the
address index holds no text.
MX and SRV rdata is stored target first (``mx.example.\\x0110``), so one index on
rdata finds every name-bearing record by its target. ``aux`` carries what an index
needs and rdata does not say by itself (NULL for nearly every row): the lowercase
target of a record that writes it in mixed case, or the 16-byte key of an address
not written in canonical form.

Version 1 (one ``rrset`` table with text keys and five indexes, 411 bytes per
tuple at 10M tuples) is migrated in place on open, in one transaction.
"""

from __future__ import annotations

import socket
import sqlite3

from mamori.store.pdns_keys import ip_key, rdata_name, reverse_name

SCHEMA_VERSION = 2

# rrtypes whose rdata is exactly one name (CNAME NS PTR DNAME); MX and SRV hold one among fields
NAME_TYPES = "(2, 5, 12, 39)"
NAMED_TYPES = "(2, 5, 12, 15, 33, 39)"

DDL = f"""
CREATE TABLE IF NOT EXISTS names (
    id INTEGER PRIMARY KEY,
    rname TEXT NOT NULL UNIQUE,  -- labels reversed: com.example.www.
    uname TEXT NOT NULL  -- U-labels of an IDN name (not reversed), '' for the others
);
CREATE TABLE IF NOT EXISTS rr (
    name INTEGER NOT NULL,  -- names.id
    rrtype INTEGER NOT NULL,
    rdata NOT NULL,  -- presentation text, a canonical A/AAAA address: its 4/16 bytes
    bailiwick TEXT NOT NULL,
    aux,  -- MX/SRV target, or lowercase name when rdata is not it, odd address: 16-byte key
    time_first INTEGER NOT NULL,
    time_last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name, rrtype, rdata, bailiwick)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rr_ip ON rr (rdata) WHERE rrtype IN (1, 28);
CREATE INDEX IF NOT EXISTS rr_rdname ON rr (rdata) WHERE rrtype IN {NAMED_TYPES};
CREATE INDEX IF NOT EXISTS rr_aux ON rr (aux) WHERE aux IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS names_fts USING fts5 (
    rname, uname, content='names', content_rowid='id', tokenize='trigram',
    detail='none', columnsize=0
);
CREATE VIEW IF NOT EXISTS rrset AS
    SELECT pdns_fwd(names.rname) AS rrname, rr.rrtype AS rrtype,
           pdns_rdata(rr.rrtype, rr.rdata) AS rdata, rr.bailiwick AS bailiwick,
           rr.time_first AS time_first, rr.time_last AS time_last, rr.count AS count
    FROM rr JOIN names ON names.id = rr.name;
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


def forward(rname: str) -> str:
    """``com.example.www.`` -> ``www.example.com.`` (and back: the same operation)."""
    return reverse_name(rname)


def encode(rrtype: int, rdata: str) -> tuple[str | bytes, str | bytes | None]:
    """(stored rdata, aux) of one record; ``decode`` gives the rdata text back exactly.
    ValueError: MX/SRV rdata holding U+0001 (presentation text escapes it)."""
    if rrtype in (1, 28):
        family = socket.AF_INET if rrtype == 1 else socket.AF_INET6
        try:
            packed = socket.inet_pton(family, rdata)
            if socket.inet_ntop(family, packed) == rdata:
                return packed, None
        except (OSError, ValueError):
            pass
        return rdata, ip_key(rdata)
    name = rdata_name(rrtype, rdata)
    if name is None:
        return rdata, "" if rrtype in (15, 33) else None  # "": a record with no name
    if rrtype in (15, 33):
        # MX/SRV: the target first, so that rr_rdname finds it ("mx.example.\x0110")
        if SEP in rdata:
            raise ValueError(f"a control character in {rdata!r}")
        head, _, target = rdata.rpartition(" ")
        if target == name and head:
            return target + SEP + head, None
        return rdata, name
    return rdata, None if name == rdata else name


SEP = "\x01"  # after an MX/SRV target in stored rdata (never in presentation text)


def decode(rrtype: int, value: str | bytes) -> str:
    """Stored rdata -> presentation text."""
    if isinstance(value, bytes):
        return socket.inet_ntop(socket.AF_INET if len(value) == 4 else socket.AF_INET6, value)
    if rrtype in (15, 33) and SEP in value:
        target, _, head = value.partition(SEP)
        return head + " " + target
    return value


def ip_parts(lo: bytes, hi: bytes) -> list[tuple[str, bytes, bytes]]:
    """A 16-byte key range as (condition, low, high) on stored rdata: IPv4 as 4 bytes (the
    part of the range inside ::ffff:0:0/96), IPv6 as 16."""
    parts = [("rrtype = 28", lo, hi)]
    v4lo, v4hi = b"\0" * 10 + b"\xff\xff" + b"\0" * 4, b"\0" * 10 + b"\xff" * 6
    a, b = max(lo, v4lo), min(hi, v4hi)
    if a <= b:
        parts.insert(0, ("rrtype = 1", a[12:], b[12:]))
    return parts


def connect_functions(db: sqlite3.Connection) -> None:
    """The SQL functions the ``rrset`` view and the migration use (per connection)."""
    db.create_function("pdns_rdata", 2, _sql_decode, deterministic=True)
    db.create_function("pdns_fwd", 1, forward, deterministic=True)
    db.create_function("pdns_store", 2, lambda t, r: encode(t, r)[0], deterministic=True)
    db.create_function("pdns_aux", 2, lambda t, r: encode(t, r)[1], deterministic=True)


def _sql_decode(rrtype: int, value: str | bytes) -> str:
    return decode(rrtype, value)


def statements() -> list[str]:
    """The DDL, one statement each (no statement holds a semicolon)."""
    return [s for s in DDL.split(";") if s.strip()]


def migrate_1(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2 inside the caller's transaction: names keep their ids, every tuple
    its times and count; the keyword index is rebuilt. Needs ``connect_functions``."""
    run = db.execute
    run("DROP TABLE IF EXISTS names_fts")
    # version 1 always wrote a tuple's name with it: this only makes sure of it
    run("INSERT OR IGNORE INTO names (rrname, uname) SELECT DISTINCT rrname, '' FROM rrset")
    run(next(s for s in statements() if "TABLE IF NOT EXISTS rr " in s))
    run("INSERT INTO rr SELECT n.id, r.rrtype, pdns_store(r.rrtype, r.rdata), r.bailiwick,"
        " pdns_aux(r.rrtype, r.rdata), r.time_first, r.time_last, r.count"
        " FROM rrset r JOIN names n ON n.rrname = r.rrname ORDER BY 1, 2, 3, 4")  # fmt: skip
    run("DROP TABLE rrset")
    run("CREATE TABLE names_v2 (id INTEGER PRIMARY KEY, rname TEXT NOT NULL UNIQUE,"
        " uname TEXT NOT NULL)")  # fmt: skip
    run("INSERT INTO names_v2 SELECT id, pdns_fwd(rrname), uname FROM names")
    run("DROP TABLE names")
    run("ALTER TABLE names_v2 RENAME TO names")
    for stmt in statements():
        run(stmt)
    run("INSERT INTO names_fts (names_fts) VALUES ('rebuild')")
    run("INSERT OR REPLACE INTO meta VALUES ('fts', (SELECT coalesce(max(id), 0) FROM names))")
