"""The transferred copy of a zone on disk: a master file plus an IXFR journal.

After an AXFR the whole zone is written to ``FILE`` (atomically: a temporary
file renamed over it). Each IXFR appends its differences to ``FILE.jnl``, so
an update costs what changed, not the zone's size. At startup the file is
loaded and the journal replayed; the next AXFR rewrites the file and empties
the journal. One record per line, absolute names: the fast loader reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mamori import atomicfile
from mamori.atomicfile import replacing
from mamori.xfr.client import RR, Delta


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".jnl")


def rr_line(rr: RR) -> str:
    name, ttl, rd = rr
    rdtype = dns.rdatatype.to_text(rd.rdtype)
    return f"{name.to_text()} {ttl} IN {rdtype} {rd.to_text(origin=None, relativize=False)}"


def save_full(path: Path, origin: str, records: list[RR]) -> None:
    """Write the zone (SOA first) and drop the journal; never leaves a half file."""
    with replacing(path) as f:
        f.write(f"; transferred copy of {origin}, written by mamori\n$ORIGIN {origin}\n")
        for rr in records:
            f.write(rr_line(rr) + "\n")
    # a crash before this unlink leaves the old journal: its deltas start from older
    # serials than the new zone's and are skipped at load (zoneload applies a delta
    # only from the serial the zone has)
    journal_path(path).unlink(missing_ok=True)


def install(spool: Path, path: Path) -> None:
    """Put a transferred zone (written and synced to *spool*) in place; drop the journal."""
    atomicfile.install(spool, path)
    journal_path(path).unlink(missing_ok=True)


def append_journal(path: Path, deltas: list[Delta]) -> None:
    with journal_path(path).open("a", encoding="utf-8") as f:
        for d in deltas:
            f.write(f"; ixfr {d.old} {d.new}\n")
            if d.deleted_text or d.added_text:  # the lines as received: no re-rendering
                f.writelines(f"- {line}" for line in d.deleted_text)
                f.writelines(f"+ {line}" for line in d.added_text)
                continue
            f.writelines(f"- {rr_line(rr)}\n" for rr in d.deleted)
            f.writelines(f"+ {rr_line(rr)}\n" for rr in d.added)
        f.write("; end\n")  # a complete batch (a torn last batch is ignored)
        f.flush()
        os.fsync(f.fileno())


def read_journal(path: Path) -> list[Delta]:
    """The journal's complete batches, in order (empty when there is none)."""
    jp = journal_path(path)
    if not jp.exists():
        return []
    done: list[Delta] = []
    batch: list[Delta] = []
    for line in jp.read_text(encoding="utf-8").splitlines():
        if line.startswith("; ixfr "):
            old, new = line.split()[2:4]
            batch.append(Delta(int(old), int(new)))
        elif line == "; end":
            done += batch
            batch = []
        elif line[:2] in ("- ", "+ ") and batch:
            rr = parse_rr(line[2:])
            (batch[-1].deleted if line[0] == "-" else batch[-1].added).append(rr)
    return done


def parse_rr(line: str) -> RR:
    name, ttl, _cls, rdtype, rest = line.split(None, 4)
    rd = dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.from_text(rdtype),
        rest,
        origin=dns.name.root,
        relativize=False,
    )
    return dns.name.from_text(name), int(ttl), rd
