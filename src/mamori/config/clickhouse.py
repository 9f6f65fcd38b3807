"""ClickHouse connection settings: ``url = "clickhouse://[USER[:PASSWORD]@]HOST[:PORT]/DB"``.

Only the value and its checks live here (no network): the stores connect
(``store.ch_conn``). The native protocol's port is 9000 by default.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from mamori.config.values import InvalidValueError

DEFAULT_PORT = 9000
_DB = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# ClickHouse's own databases (any case): mamori's tables there would clash with the
# server's (its system.query_log)
RESERVED_DATABASES = frozenset(("system", "information_schema"))


@dataclass(frozen=True)
class ClickHouseUrl:
    """Where a ClickHouse server is: host, native-protocol TCP port, database, user,
    password ("" when none is given; ``password_file`` may give it)."""

    host: str
    port: int = DEFAULT_PORT
    database: str = "default"
    user: str = "default"
    password: str = ""

    def __str__(self) -> str:  # never shows the password
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"clickhouse://{self.user}@{host}:{self.port}/{self.database}"


def parse_clickhouse_url(text: str) -> ClickHouseUrl:
    """``clickhouse://[user[:password]@]host[:port]/database``; ValueError naming what is
    wrong. User and password are percent-decoded. No database (``clickhouse://host:9000``
    or ``.../``) is ClickHouse's ``default`` database, as for clickhouse-client and the
    clickhouse-driver URLs; ``str()`` of the result always shows it. No port is 9000;
    port 0 and the server's own databases (``system``, ``information_schema``, in any
    case) are refused."""
    u = urllib.parse.urlsplit(text)
    if u.scheme != "clickhouse":
        raise ValueError(f'must be "clickhouse://HOST:9000/DATABASE", got {text!r}')
    if not u.hostname:
        raise ValueError(f"no host in {text!r}")
    try:
        port = DEFAULT_PORT if u.port is None else u.port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if port == 0:
        raise ValueError(f"port 0 in {text!r}: give the server's TCP port (1-65535, 9000)")
    db = u.path.lstrip("/") or "default"
    if not _DB.fullmatch(db):
        raise ValueError(f"bad database name {db!r} (letters, digits, _)")
    if db.lower() in RESERVED_DATABASES:
        raise ValueError(f"database {db!r} is ClickHouse's own: give a database for mamori")
    if u.query or u.fragment:
        raise ValueError(f"no ?query or #fragment allowed in {text!r}")
    user = urllib.parse.unquote(u.username) if u.username else "default"
    password = urllib.parse.unquote(u.password) if u.password else ""
    return ClickHouseUrl(u.hostname, port, db, user, password)


def clickhouse_url(raw: Any, _ctx: Any, _rc: str) -> ClickHouseUrl:
    """Config converter of ``url``."""
    if not isinstance(raw, str):
        raise InvalidValueError('must be a string "clickhouse://HOST:9000/DATABASE"')
    try:
        return parse_clickhouse_url(raw)
    except ValueError as e:
        raise InvalidValueError(str(e)) from None


def cluster_name(raw: Any, _ctx: Any, _rc: str) -> str:
    """Config converter of ``cluster``: a name of the server's ``remote_servers``."""
    if isinstance(raw, str) and _DB.fullmatch(raw):
        return raw
    raise InvalidValueError(f"must be a cluster name (letters, digits, _), got {raw!r}")


def secret_file(raw: Any, ctx: Any, rc: str) -> Any:
    """Config converter of ``password_file``: a readable file (its first line is used)."""
    from mamori.config.values import path

    p = path(raw, ctx, rc)
    try:
        p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidValueError(f"cannot read {p}: {e}") from None
    return p


def node_name(raw: Any, _ctx: Any, _rc: str) -> str:
    """Config converter of ``[server] node_name``: 1 to 64 printable characters, no
    leading or trailing space."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidValueError(f"must be a non-empty name, got {raw!r}")
    if len(raw) > 64:
        raise InvalidValueError(f"must be at most 64 characters, got {len(raw)}")
    if not raw.isprintable() or raw != raw.strip():
        raise InvalidValueError(f"must be printable, without leading/trailing spaces: {raw!r}")
    return raw
