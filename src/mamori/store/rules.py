"""Local rules: names blocked or allowed from the console, the REST API or the CLI.

The rules live in a table of the audit log's SQLite file (store/audit.py), so a
change and its audit entry commit in one transaction. Each change rewrites the
managed policy zones from the table:

- ``rules.mamori.``: the rules for everyone, first in the policy order (an
  allow rule beats the feeds);
- ``GROUP.rules.mamori.``: the rules of one ``[[group]]`` (``groups = [...]``),
  right after it, applied only to that group's clients.

A block rule is ``name CNAME .`` (NXDOMAIN with EDE 15 Blocked), an allow rule
``name CNAME rpz-passthru.``; ``subdomains`` adds ``*.name``. Zone files are
written atomically (temporary file, fsync, rename) with an SOA serial that
always increases (RFC 1982), under a file lock (the CLI and the service may
write at once). The running service is told at once (``Runtime.zones_changed``);
without one, its zone file watcher picks the file up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import idna

from mamori.config import Config, RpzConfig
from mamori.config.sections import rules_zones
from mamori.dnsutil import serial as rfc1982
from mamori.feeds.publish.rpz import cover_closest_enclosers
from mamori.store.audit import AuditLog

ACTIONS = ("block", "allow")
MAX_COMMENT = 500
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_SPECIAL = ("rpz-ip", "rpz-nsip", "rpz-client-ip", "rpz-nsdname", "mamori-qtype")
_RDATA = {"block": ".", "allow": "rpz-passthru."}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,         -- A-labels, lowercase, no final dot
    groups TEXT NOT NULL,       -- sorted group names joined by ","; "" = everyone
    action TEXT NOT NULL,       -- "block" or "allow"
    subdomains INTEGER NOT NULL,
    comment TEXT NOT NULL,
    created REAL NOT NULL,      -- UNIX time
    actor TEXT NOT NULL,        -- "user:NAME", "key:NAME", "cli:USER"
    UNIQUE (name, groups)
);
CREATE TABLE IF NOT EXISTS rules_serial (
    zone TEXT PRIMARY KEY,
    serial INTEGER NOT NULL
);
"""


class RuleError(ValueError):
    """A rule refused; *field*: the input field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    action: str
    subdomains: bool
    comment: str
    groups: tuple[str, ...]
    created: float
    actor: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "action": self.action,
            "subdomains": self.subdomains,
            "comment": self.comment,
            "groups": list(self.groups),
            "created": self.created,
            "actor": self.actor,
        }


def rule_name(raw: object) -> str:
    """A rule's name in lowercase A-labels without the final dot; RuleError (field "name")."""
    if not isinstance(raw, str):
        raise RuleError("name must be a string", "name")
    text = raw.strip().rstrip(".")
    if not text:
        raise RuleError("name is empty", "name")
    if "*" in text:
        raise RuleError("name must not hold wildcards: use subdomains = true", "name")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            raise RuleError(f"not a valid internationalised name: {e}", "name") from None
    text = text.lower()
    if len(text) > 253:
        raise RuleError("name longer than 253 octets", "name")
    for label in text.split("."):
        if not _LABEL.match(label):
            raise RuleError(f"bad label {label!r} in name", "name")
        if label in _SPECIAL:
            raise RuleError(f"{label} is a policy zone trigger label", "name")
    return text


def check_rule(doc: dict[str, Any], known_groups: set[str]) -> dict[str, Any]:
    """A rule's fields from a request body (name, action, subdomains, comment, groups),
    validated and normalised; RuleError naming the field."""
    allowed = {"name", "action", "subdomains", "comment", "groups"}
    for key in doc:
        if key not in allowed:
            raise RuleError(f"unknown field {key} (known: {', '.join(sorted(allowed))})", key)
    if "name" not in doc:
        raise RuleError("name is missing", "name")
    name = rule_name(doc["name"])
    action = doc.get("action", "block")
    if action not in ACTIONS:
        raise RuleError('action must be "block" or "allow"', "action")
    subdomains = doc.get("subdomains", False)
    if not isinstance(subdomains, bool):
        raise RuleError("subdomains must be true or false", "subdomains")
    comment = doc.get("comment", "")
    if not isinstance(comment, str):
        raise RuleError("comment must be a string", "comment")
    if len(comment) > MAX_COMMENT:
        raise RuleError(f"comment longer than {MAX_COMMENT} characters", "comment")
    if "\x00" in comment:
        raise RuleError("comment holds a NUL character", "comment")
    groups = doc.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise RuleError("groups must be a list of group names", "groups")
    unknown = sorted(set(groups) - known_groups)
    if unknown:
        raise RuleError(f"no [[group]] named {', '.join(unknown)}", "groups")
    return {
        "name": name,
        "action": action,
        "subdomains": subdomains,
        "comment": comment,
        "groups": tuple(sorted(set(groups))),
    }


def _rule(row: tuple[Any, ...]) -> Rule:
    rid, name, groups, action, sub, comment, created, actor = row
    return Rule(rid, name, action, bool(sub), comment,
                tuple(g for g in groups.split(",") if g), created, actor)  # fmt: skip


_COLUMNS = "id, name, groups, action, subdomains, comment, created, actor"


class RuleStore:
    """The rules table beside the audit log, and the zones written from it."""

    def __init__(self, audit: AuditLog, cfg: Config) -> None:
        self.audit = audit
        self.cfg = cfg
        with audit.lock, audit.db:
            audit.db.executescript(_SCHEMA)

    # ------------------------------------------------------------ reading
    def search(self, search: str = "", limit: int = 100, offset: int = 0) -> tuple[list[Rule], int]:
        """Rules whose name or comment holds *search*, by name; and how many match."""
        where, args = "1", []
        if search:
            where = "(instr(name, ?) OR instr(comment, ?))"
            args = [search.lower().rstrip("."), search]
        with self.audit.lock:
            rows = self.audit.db.execute(
                f"SELECT {_COLUMNS} FROM rules WHERE {where}"
                " ORDER BY name, groups LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            (total,) = self.audit.db.execute(
                f"SELECT count(*) FROM rules WHERE {where}", args
            ).fetchone()
        return [_rule(r) for r in rows], int(total)

    def count_for_group(self, group: str) -> int:
        """How many rules apply to clients of *group* (rules kept for several groups
        included)."""
        with self.audit.lock:
            rows = self.audit.db.execute("SELECT groups FROM rules WHERE groups != ''").fetchall()
        return sum(1 for (groups,) in rows if group in groups.split(","))

    def get(self, name: str) -> list[Rule]:
        with self.audit.lock:
            rows = self.audit.db.execute(
                f"SELECT {_COLUMNS} FROM rules WHERE name = ? ORDER BY groups", (name,)
            ).fetchall()
        return [_rule(r) for r in rows]

    # ------------------------------------------------------------ changes
    def add(self, fields: dict[str, Any], actor: str, address: str) -> tuple[Rule, bool]:
        """Add or replace (same name and groups) a rule checked by ``check_rule``; the
        rule and True when it is new. The zones are rewritten before the commit: a zone
        that cannot be written leaves the table as it was."""
        groups = ",".join(fields["groups"])
        db = self.audit.db
        with self.audit.lock, self._zone_lock(), self.audit.db:
            old = db.execute(
                "SELECT id FROM rules WHERE name = ? AND groups = ?", (fields["name"], groups)
            ).fetchone()
            if old is not None:
                db.execute("DELETE FROM rules WHERE id = ?", (old[0],))
            row = (fields["name"], groups, fields["action"], int(fields["subdomains"]),
                   fields["comment"], time.time(), actor)  # fmt: skip
            rid = db.execute(
                "INSERT INTO rules (name, groups, action, subdomains, comment, created, actor)"
                " VALUES (?,?,?,?,?,?,?)",
                row,
            ).lastrowid
            detail = {**fields, "groups": list(fields["groups"]), "replaced": old is not None}
            self.audit.record(actor, address, "rule.add", fields["name"], detail, db=db)
            self._write_zones(db)
            new = db.execute(f"SELECT {_COLUMNS} FROM rules WHERE id = ?", (rid,)).fetchone()
        return _rule(new), old is None

    def remove(
        self, name: str, actor: str, address: str, groups: tuple[str, ...] | None = None
    ) -> list[Rule]:
        """Remove the rules of *name* (only the one of *groups* when given); those removed."""
        db = self.audit.db
        with self.audit.lock, self._zone_lock(), self.audit.db:
            sql, args = f"SELECT {_COLUMNS} FROM rules WHERE name = ?", [name]
            if groups is not None:
                sql += " AND groups = ?"
                args.append(",".join(sorted(groups)))
            gone = [_rule(r) for r in db.execute(sql, args).fetchall()]
            if not gone:
                return []
            db.executemany("DELETE FROM rules WHERE id = ?", [(r.id,) for r in gone])
            for r in gone:
                detail = {**r.as_json(), "id": r.id}
                self.audit.record(actor, address, "rule.remove", name, detail, db=db)
            self._write_zones(db)
        return gone

    def sync(self) -> list[str]:
        """Rewrite the managed zones whose file is missing or differs from the table (at
        start, and after the groups changed); the names of the zones written."""
        with self.audit.lock, self._zone_lock(), self.audit.db:
            return self._write_zones(self.audit.db)

    # ------------------------------------------------------------ zones
    @contextlib.contextmanager
    def _zone_lock(self) -> Iterator[None]:
        path = rules_dir(self.cfg) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _write_zones(self, db: sqlite3.Connection) -> list[str]:
        rules = [_rule(r) for r in db.execute(f"SELECT {_COLUMNS} FROM rules ORDER BY created, id")]
        written = []
        for z in rules_zones(self.cfg):
            group = zone_group(z)
            owners: dict[str, str] = {}
            for r in rules:  # the newest rule of a name wins within a zone
                if (group is None and r.groups) or (group is not None and group not in r.groups):
                    continue
                owners[r.name] = _RDATA[r.action]
                if r.subdomains:
                    owners[f"*.{r.name}"] = _RDATA[r.action]
                else:
                    owners.pop(f"*.{r.name}", None)
            lines = sorted(cover_closest_enclosers(f"{o} CNAME {t}" for o, t in owners.items()))
            if self._write_zone(db, z, lines):
                written.append(z.name)
        return written

    def _write_zone(self, db: sqlite3.Connection, z: RpzConfig, lines: list[str]) -> bool:
        assert z.file is not None
        old_serial, old_lines = read_zone(z.file)
        if old_lines == lines:
            return False
        row = db.execute("SELECT serial FROM rules_serial WHERE zone = ?", (z.name,)).fetchone()
        current = old_serial
        if row is not None and (old_lines is None or rfc1982.gt(int(row[0]), current)):
            current = int(row[0])
        serial = rfc1982.forward(current, int(time.time()) % rfc1982.MODULUS)
        write_zone_file(z.file, z.name, serial, lines)
        db.execute(
            "INSERT INTO rules_serial (zone, serial) VALUES (?, ?)"
            " ON CONFLICT (zone) DO UPDATE SET serial = excluded.serial",
            (z.name, serial),
        )
        return True


def rules_dir(cfg: Config) -> Path:
    return cfg.store.path.parent / "rules"


def zone_group(z: RpzConfig) -> str | None:
    """The group of a managed zone (None: ``rules.mamori.``, everyone's)."""
    return z.groups[0] if z.groups else None


def write_zone_file(path: Path, origin: str, serial: int, lines: list[str]) -> None:
    """The zone, atomically: a temporary file, fsync, rename (then fsync the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(f"; local rules, written by mamori from its rules table: do not edit\n"
                f"$ORIGIN {origin}\n$TTL 60\n"
                f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 60\n"
                "@ NS localhost.\n")  # fmt: skip
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_zone(path: Path) -> tuple[int, list[str] | None]:
    """(serial, rule lines) of a zone this module wrote; (0, None) when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0, None
    serial, out = 0, []
    for line in text.splitlines():
        if line.startswith("@ SOA"):
            with contextlib.suppress(IndexError, ValueError):
                serial = int(line.split()[4])
        elif line and not line.startswith((";", "$", "@")):
            out.append(line)
    return serial, out


def open_store(cfg: Config) -> RuleStore:
    """The rule store of a configuration (its audit log in the store directory)."""
    from mamori.store.audit import audit_path

    return RuleStore(AuditLog(audit_path(cfg.store.path.parent)), cfg)


def ensure_zones(cfg: Config) -> None:
    """Write the managed zones if missing or stale (``mamori serve``/``check``/``web``)."""
    if not cfg.rules.enabled:
        return
    store = open_store(cfg)
    try:
        store.sync()
    finally:
        store.audit.close()


__all__ = [
    "ACTIONS",
    "Rule",
    "RuleError",
    "RuleStore",
    "check_rule",
    "ensure_zones",
    "open_store",
    "read_zone",
    "rule_name",
    "rules_dir",
]
