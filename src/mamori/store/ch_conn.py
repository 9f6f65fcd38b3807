"""A ClickHouse connection as the stores use it: SQL text in, rows out, and inserts.

``Conn`` is the seam: ``DriverConn`` speaks the native protocol (``clickhouse-driver``,
which works with Debian's clickhouse-server 18.16 and with current releases); the
tests add an in-process engine (``chdb``) behind the same Protocol, so the same SQL
is run on an old and a current ClickHouse. Values go into SQL only through ``lit``.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from mamori.config.clickhouse import ClickHouseUrl
from mamori.errors import StoreError

Row = tuple[Any, ...]


class Conn(Protocol):
    database: str

    def query(self, sql: str) -> list[Row]:
        """Run *sql*; its rows. Raises ``ChUnavailable`` (no answer: down, slow) or
        ``StoreError`` (the server refused the statement)."""

    def stream(self, sql: str) -> Iterator[Row]:
        """The rows of *sql*, streamed in blocks (never all in memory)."""

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Insert *rows* as ONE block (one part of a MergeTree table: all or nothing)."""

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[list[Any]]) -> None:
        """``insert`` with the rows given column by column (*data*: one list per column)."""

    def version(self) -> tuple[int, ...]:
        """The server's version, e.g. (18, 16, 1)."""

    def close(self) -> None: ...


class ChUnavailable(StoreError):  # noqa: N818 (a state, not a programming error)
    """ClickHouse did not answer (refused, reset, timed out): the request may or may not
    have been carried out."""


class ChRefused(ChUnavailable):
    """The server refuses this connection's user or database (authentication failed, an
    unknown database, no rights): a configuration error, every request fails the same
    way until it is fixed. A ``ChUnavailable``: the writers keep their batches in the
    spool meanwhile (logging must never stop DNS); ``mamori check`` fails on it."""


# server error codes meaning the user or the database of the URL is refused
REFUSED = {192, 193, 194, 195, 516, 81, 164, 291, 497}


def lit(value: object) -> str:
    """A SQL literal for *value* (int, str, bytes, None, or a list/tuple of them)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return f"unhex('{value.hex()}')"
    if isinstance(value, str):
        if not value.isprintable():  # control bytes: exact, whatever the escaping rules
            return f"unhex('{value.encode().hex()}')"
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(lit(v) for v in value) + ")"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def read_password(url: ClickHouseUrl, password_file: Path | None) -> str:
    """The password: the first line of *password_file* when given (without its line end;
    spaces are part of it), else the URL's."""
    if password_file is None:
        return url.password
    try:
        lines = password_file.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise StoreError(f"{password_file}: cannot read the ClickHouse password: {e}") from e
    return lines[0] if lines else ""


class DriverConn:
    """The native protocol (TCP, port 9000) through ``clickhouse-driver``.

    *timeout*: seconds for connecting and for each send/receive; a server slower than
    that is treated as unavailable (the caller keeps its batch for later)."""

    def __init__(
        self, url: ClickHouseUrl, password: str = "", timeout: float = 10.0, create_db: bool = True
    ) -> None:
        from clickhouse_driver import Client

        # the driver logs a traceback per failed connection; the store logs one line
        logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)
        self.database = url.database
        self.url = url
        self._args = (password, timeout)
        self._client = Client(
            url.host,
            port=url.port,
            user=url.user,
            password=password or url.password,
            database="default",  # the database may not exist yet
            connect_timeout=timeout,
            send_receive_timeout=timeout,
            sync_request_timeout=timeout,
            settings={"strings_as_bytes": False},
        )

    def _run(self, sql: str, data: Sequence[Row] | None = None, **kw: Any) -> Any:
        from clickhouse_driver.errors import (
            Error,
            NetworkError,
            ServerException,
            SocketTimeoutError,
        )

        try:
            if data is None:
                return self._client.execute(sql, **kw)
            return self._client.execute(sql, data, **kw)
        except ServerException as e:
            cls = ChRefused if int(getattr(e, "code", 0) or 0) in REFUSED else StoreError
            raise cls(f"ClickHouse {self.url}: {server_cause(e, self.url)}") from e
        except (NetworkError, SocketTimeoutError, OSError, EOFError) as e:
            self._client.disconnect()
            raise ChUnavailable(f"ClickHouse {self.url}: {self._no_answer(e)}") from e
        except Error as e:
            self._client.disconnect()
            if type(e).__name__ in _REFUSED_HERE:  # the statement is wrong: never retried
                raise StoreError(f"ClickHouse {self.url}: {client_cause(e)}") from e
            raise ChUnavailable(f"ClickHouse {self.url}: {self._no_answer(e)}") from e
        except (struct.error, OverflowError) as e:  # a value the driver cannot encode
            self._client.disconnect()
            raise StoreError(f"ClickHouse {self.url}: a value does not fit its column: {e}") from e

    def _no_answer(self, e: BaseException) -> str:
        return network_cause(e, self.url, self._args[1])

    def query(self, sql: str) -> list[Row]:
        return list(self._run(sql))

    def stream(self, sql: str) -> Iterator[Row]:
        from clickhouse_driver.errors import Error, ServerException

        try:
            yield from self._client.execute_iter(sql, settings={"max_block_size": 65536})
        except ServerException as e:
            self._client.disconnect()
            cls = ChRefused if int(getattr(e, "code", 0) or 0) in REFUSED else StoreError
            raise cls(f"ClickHouse {self.url}: {server_cause(e, self.url)}") from e
        except (Error, OSError, EOFError) as e:
            self._client.disconnect()
            raise ChUnavailable(f"ClickHouse {self.url}: {self._no_answer(e)}") from e

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        n = len(rows) + 1
        settings = {"insert_block_size": n, "max_insert_block_size": n, "max_block_size": n}
        self._run(
            f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES",
            list(rows),
            settings=settings,
        )

    def insert_columns(self, table: str, columns: Sequence[str], data: Sequence[list[Any]]) -> None:
        n = (len(data[0]) if data else 0) + 1
        settings = {"insert_block_size": n, "max_insert_block_size": n, "max_block_size": n}
        self._run(
            f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES",
            list(data),  # type: ignore[arg-type]
            settings=settings,
            columnar=True,
        )

    def clone(self) -> DriverConn:
        """Another connection to the same server and database (one per thread)."""
        return DriverConn(self.url, *self._args)

    def version(self) -> tuple[int, ...]:
        text = str(self.query("SELECT version()")[0][0])
        return tuple(int(x) for x in text.split(".") if x.isdigit())

    def close(self) -> None:
        self._client.disconnect()


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:300]


# server error codes (ClickHouse's ErrorCodes.cpp) -> the cause, in words
_AUTH = {
    192: "no such user",  # UNKNOWN_USER (before 20.x)
    193: "wrong password",  # WRONG_PASSWORD (before 20.x)
    194: "the user needs a password",  # REQUIRED_PASSWORD (before 20.x)
    195: "not allowed from this address",  # IP_ADDRESS_NOT_ALLOWED
    516: "unknown user or wrong password",  # AUTHENTICATION_FAILED (20.x on)
}
_DB_NAME = re.compile(r"[Dd]atabase `?([A-Za-z0-9_]+)`? (doesn't|does not) exist")


# clickhouse-driver errors raised on this side before the server saw the data: a value
# that does not fit its column type (the statement is wrong; sending it again never helps)
_REFUSED_HERE = frozenset(
    ("TypeMismatchError", "CannotParseUuidError", "CannotParseDomainError",
     "TooLargeStringSize", "UnknownTypeError")
)  # fmt: skip


def client_cause(e: Any) -> str:
    """One line for a value clickhouse-driver refused to send (*e*: its ``Error``):
    ``Code: 53. Type mismatch ...`` becomes "a value does not fit its column: ..."."""
    code = int(getattr(e, "code", 0) or 0)
    text = _first_line(str(getattr(e, "message", "") or e)).rstrip(".")
    text = text.split("Repeat query with types_check=True for detailed info. ", 1)[-1]
    return f"a value does not fit its column: {text} (code {code})"


def server_cause(e: Any, url: ClickHouseUrl) -> str:
    """One line saying why the server refused (*e*: clickhouse-driver's ``ServerException``,
    with ``code`` and ``message``): authentication, a missing database, access rights;
    else the server's own first line after ``Code: N.``."""
    code = int(getattr(e, "code", 0) or 0)
    text = _first_line(str(getattr(e, "message", "") or "")).removeprefix("DB::Exception: ")
    text = text.split(". Stack trace", 1)[0].rstrip(".")
    if code in _AUTH:
        return f"authentication failed for user {url.user}: {_AUTH[code]} (code {code})"
    if code == 81:  # UNKNOWN_DATABASE
        m = _DB_NAME.search(text)
        return f"database {m.group(1) if m else url.database} does not exist (code 81)"
    if code in (164, 291, 497):  # READONLY, DATABASE_ACCESS_DENIED, ACCESS_DENIED
        return f"user {url.user} is not allowed to do this: {text} (code {code})"
    return f"{text} (code {code})" if text else f"server error code {code}"


def network_cause(e: BaseException, url: ClickHouseUrl, timeout: float) -> str:
    """One line saying why there is no answer: refused, timed out, a host name that does
    not resolve, a connection closed or reset (*e*: the driver's or the OS's error)."""
    text = str(getattr(e, "message", "") or e or type(e).__name__)
    low = text.lower()
    if "refused" in low:
        return "cannot connect: connection refused"
    if "timed out" in low or "timeout" in low:
        return f"no answer within {timeout:g} s (timed out)"
    if "name or service not known" in low or "name resolution" in low or "nodename" in low:
        return f"cannot connect: host name {url.host} does not resolve"
    if "reset" in low:
        return "the connection was reset by the server"
    if isinstance(e, EOFError) or "unexpected eof" in low:
        return "the server closed the connection"
    return f"cannot connect: {_first_line(text)}"
