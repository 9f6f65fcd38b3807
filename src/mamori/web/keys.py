"""API keys: created with `mamori keys add`, stored hashed, with a scope, a rate limit
and a daily quota.

A key is shown once, at creation (``mk_`` + 32 URL-safe characters); only its
SHA-256 is kept. Each key has a token bucket (``rate`` requests per second,
``burst``) kept in memory, and a daily quota (``quota`` requests per UTC day,
0 = none) counted in the key file so that restarts do not reset it.

Scopes (``SCOPES``, each includes the ones before it): ``pdns`` the passive DNS
APIs (COF, DNSDB); ``read`` also the REST API's reads (``GET /api/v1/...``);
``admin`` also its changes (rules, groups, feeds). Keys made before scopes
existed are ``pdns`` keys: they were made for the passive DNS APIs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,  -- scrypt$N$r$p$salt-hex$key-hex
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    rate REAL NOT NULL,
    burst REAL NOT NULL,
    quota INTEGER NOT NULL,
    day INTEGER NOT NULL DEFAULT 0,
    used INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    scope TEXT NOT NULL DEFAULT 'pdns'  -- one of SCOPES
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,  -- SHA-256 of the session id the signed cookie carries
    user TEXT NOT NULL,
    created REAL NOT NULL,  -- UNIX seconds: the login
    seen REAL NOT NULL  -- UNIX seconds: the last request (to the minute)
) WITHOUT ROWID;
"""
SEEN_EVERY = 60.0  # seconds: a session's last-seen time is written at most this often
SCOPES = ("pdns", "read", "admin")  # each includes the ones before it


@dataclass(frozen=True)
class KeyInfo:
    name: str
    rate: float
    burst: float
    quota: int
    used_today: int
    created: int
    scope: str = "pdns"


class Refused(Exception):  # noqa: N818 - an answer, not a bug
    """Why a request is refused: 401 (no/unknown key) or 429 (rate or quota)."""

    def __init__(self, status: int, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def hash_password(password: str) -> str:
    """scrypt (RFC 7914), a memory-hard KDF: ``scrypt$N$r$p$salt$key`` (hex)."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _alg, n, r, p, salt, key = stored.split("$")
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
            maxmem=64 << 20, dklen=len(key) // 2,
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), key)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _today(now: float) -> int:
    return int(now // 86400)


class KeyStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=10, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(api_keys)")}
        if "scope" not in columns:  # a key file from before scopes: its keys stay pdns keys
            with self.db:
                self.db.execute(
                    "ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'pdns'"
                )
        self.lock = threading.Lock()
        self.buckets: dict[str, list[float]] = {}  # name -> [tokens, last refill]

    def close(self) -> None:
        self.db.close()

    def add(
        self,
        name: str,
        rate: float = 10.0,
        burst: float = 20.0,
        quota: int = 0,
        scope: str = "pdns",
    ) -> str:
        """Create a key; return it (the only time it is shown). ValueError: the name
        exists, or *scope* is not one of SCOPES."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}")
        key = "mk_" + secrets.token_urlsafe(24)
        with self.lock, self.db:
            try:
                self.db.execute(
                    "INSERT INTO api_keys (name, hash, rate, burst, quota, created, scope)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, _hash(key), rate, burst, quota, int(time.time()), scope),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"a key named {name!r} exists already") from None
        return key

    def remove(self, name: str) -> bool:
        with self.lock, self.db:
            return self.db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount > 0

    def all_keys(self) -> list[KeyInfo]:
        today = _today(time.time())
        return [
            KeyInfo(n, r, b, q, u if d == today else 0, c, s)
            for n, r, b, q, d, u, c, s in self.db.execute(
                "SELECT name, rate, burst, quota, day, used, created, scope FROM api_keys"
                " ORDER BY name"
            )
        ]

    def check(self, key: str | None, now: float | None = None, need: str = "pdns") -> str:
        """The key's name if the request may go on; Refused otherwise (counts the request):
        401 no or unknown key, 403 the key's scope does not cover *need* (one of SCOPES),
        429 over its rate or quota."""
        if not key:
            raise Refused(401, "an API key is needed (X-API-Key, Authorization or Basic auth)")
        now = time.time() if now is None else now
        with self.lock:
            row = self.db.execute(
                "SELECT name, rate, burst, quota, day, used, scope FROM api_keys WHERE hash = ?",
                (_hash(key),),
            ).fetchone()
            if row is None:
                raise Refused(401, "unknown API key")
            name, rate, burst, quota, day, used, scope = row
            if SCOPES.index(scope) < SCOPES.index(need):
                raise Refused(
                    403,
                    f"key {name} has scope {scope}; this needs {need}"
                    f" (mamori keys add NAME --scope {need})",
                )
            bucket = self.buckets.setdefault(name, [burst, now])
            bucket[0] = min(burst, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if bucket[0] < 1:
                raise Refused(429, f"rate limit: {rate:g} requests per second", 1)
            today = _today(now)
            used = used if day == today else 0
            if quota and used >= quota:
                reset = int((today + 1) * 86400 - now)
                raise Refused(429, f"daily quota of {quota} requests used up", reset)
            bucket[0] -= 1
            with self.db:
                self.db.execute(
                    "UPDATE api_keys SET day = ?, used = ? WHERE name = ?", (today, used + 1, name)
                )
            return str(name)

    # ------------------------------------------------------------- console users
    def add_user(self, name: str, password: str) -> None:
        """Create the console user *name*, or set its password: that ends its sessions."""
        if len(password) < 10:
            raise ValueError("the password needs at least 10 characters")
        with self.lock, self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO users VALUES (?, ?, ?)",
                (name, hash_password(password), int(time.time())),
            )
            self.db.execute("DELETE FROM sessions WHERE user = ?", (name,))

    def verify_user(self, name: str, password: str) -> bool:
        row = self.db.execute("SELECT hash FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            hash_password(password)  # the same time whether the user exists or not
            return False
        return verify_password(password, row[0])

    def users(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]

    def remove_user(self, name: str) -> bool:
        """Remove the console user *name* and end its sessions; False: no such user."""
        with self.lock, self.db:
            self.db.execute("DELETE FROM sessions WHERE user = ?", (name,))
            return self.db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    # ------------------------------------------------------------- console sessions
    def open_session(self, user: str, max_age: float, now: float | None = None) -> str:
        """A new session of *user* (a login): its id, for the signed cookie. Sessions
        older than *max_age* seconds are forgotten on the way."""
        now = time.time() if now is None else now
        sid = secrets.token_urlsafe(32)
        with self.lock, self.db:
            self.db.execute("DELETE FROM sessions WHERE created < ?", (now - max_age,))
            self.db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?)", (_hash(sid), user, now, now)
            )
        return sid

    def session_user(
        self, sid: str, idle: float, max_age: float, now: float | None = None
    ) -> str | None:
        """The user of session *sid* if it is alive: not closed, its user's password
        unchanged, seen within *idle* seconds, begun within *max_age* seconds (both 0 =
        no limit); else None (and an expired session is forgotten)."""
        if not sid:
            return None
        now = time.time() if now is None else now
        h = _hash(sid)
        row = self.db.execute(
            "SELECT user, created, seen FROM sessions WHERE id = ?", (h,)
        ).fetchone()
        if row is None:
            return None
        user, created, seen = row
        if (max_age and now - created > max_age) or (idle and now - seen > idle):
            self.close_session(sid)
            return None
        if now - seen >= SEEN_EVERY:
            with self.lock, self.db:
                self.db.execute("UPDATE sessions SET seen = ? WHERE id = ?", (now, h))
        return str(user)

    def close_session(self, sid: str) -> None:
        """End session *sid* (logout)."""
        with self.lock, self.db:
            self.db.execute("DELETE FROM sessions WHERE id = ?", (_hash(sid),))

    def rate_info(self, name: str, now: float | None = None) -> dict[str, object]:
        """DNSDB's /rate_limit answer for a key."""
        now = time.time() if now is None else now
        row = self.db.execute(
            "SELECT quota, day, used FROM api_keys WHERE name = ?", (name,)
        ).fetchone()
        if row is None or not row[0]:
            return {"rate": {"reset": "n/a", "limit": "unlimited", "remaining": "n/a"}}
        quota, day, used = row
        today = _today(now)
        return {
            "rate": {
                "reset": (today + 1) * 86400,
                "limit": quota,
                "remaining": max(0, quota - (used if day == today else 0)),
            }
        }
