"""ClickHouse errors in one line: the server's URL (never the password) and the cause,
against Debian's real clickhouse-server (18.16): a wrong password, an unknown user, a
database that does not exist, nothing listening; and ``mamori check`` saying so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mamori.config.clickhouse import parse_clickhouse_url
from mamori.errors import StoreError
from mamori.store.ch_conn import ChUnavailable, DriverConn
from tests.support.clickhouse import PW, PW_USER
from tests.support.net import free_port


def _url(server: Any, userinfo: str, db: str = "default") -> str:
    return f"clickhouse://{userinfo}@127.0.0.1:{server.tcp}/{db}"


@pytest.mark.parametrize(
    ("userinfo", "cause"),
    [
        (
            f"{PW_USER}:not-the-password",
            f"authentication failed for user {PW_USER}: wrong password",
        ),
        ("nobody:whatever", "authentication failed for user nobody: no such user"),
        (PW_USER, f"authentication failed for user {PW_USER}: the user needs a password"),
    ],
)
def test_authentication_errors_name_the_user_and_the_server_not_the_password(
    clickhouse_server: Any, userinfo: str, cause: str
) -> None:
    url = parse_clickhouse_url(_url(clickhouse_server, userinfo))
    conn = DriverConn(url, timeout=5)
    with pytest.raises(StoreError) as e:
        conn.query("SELECT 1")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"ClickHouse {url}: {cause}")
    assert "not-the-password" not in msg and "whatever" not in msg


def test_the_right_password_works(clickhouse_server: Any) -> None:
    conn = DriverConn(parse_clickhouse_url(_url(clickhouse_server, f"{PW_USER}:{PW}")), timeout=5)
    assert conn.query("SELECT 1") == [(1,)]
    conn.close()


def test_a_database_that_does_not_exist_is_named(clickhouse_server: Any) -> None:
    from mamori.store.pdns_clickhouse import PdnsClickHouse

    url = parse_clickhouse_url(_url(clickhouse_server, "default", "no_such_db"))
    store = PdnsClickHouse(DriverConn(url, timeout=5), readonly=True)  # never creates it
    with pytest.raises(
        StoreError, match=r"^ClickHouse .*/no_such_db: database no_such_db does not"
    ):
        store.stats()
    store.close()


def test_nothing_listening_is_connection_refused() -> None:
    url = parse_clickhouse_url(f"clickhouse://u:secret@127.0.0.1:{free_port()}/db")
    with pytest.raises(ChUnavailable) as e:
        DriverConn(url, timeout=5).query("SELECT 1")
    assert str(e.value) == f"ClickHouse {url}: cannot connect: connection refused"
    assert "secret" not in str(e.value)


def test_check_reports_a_wrong_password_in_one_line(tmp_path: Path, clickhouse_server: Any) -> None:
    conf = tmp_path / "m.toml"
    conf.write_text(
        '[upstream]\nservers = ["127.0.0.1:5300"]\n[pdns]\n'
        f'url = "{_url(clickhouse_server, f"{PW_USER}:wrong-one")}"\n'
    )
    r = subprocess.run([sys.executable, "-m", "mamori", "check", "--config", str(conf)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0
    assert f"authentication failed for user {PW_USER}: wrong password" in r.stderr
    assert "wrong-one" not in r.stderr + r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
