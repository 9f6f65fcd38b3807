"""``[pdns] url`` / ``password_file``: errors name file, line and key; ``mamori check``
connects to a real ClickHouse and reports the server version and the schema state."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mamori import config
from mamori.config.clickhouse import ClickHouseUrl, parse_clickhouse_url
from mamori.errors import ConfigError

BASE = '[upstream]\nservers = ["127.0.0.1:5300"]\n[pdns]\n'


def _load(tmp_path: Path, text: str) -> config.Config:
    p = tmp_path / "m.toml"
    p.write_text(BASE + text)
    return config.load(p)


def test_url_forms() -> None:
    assert parse_clickhouse_url("clickhouse://ch1.example:9440/pdns") == ClickHouseUrl(
        "ch1.example", 9440, "pdns"
    )
    u = parse_clickhouse_url("clickhouse://ana%40lyst:p%3Ass@[::1]/db_2")
    assert (u.host, u.port, u.database, u.user, u.password) == ("::1", 9000, "db_2", "ana@lyst",
                                                                 "p:ss")  # fmt: skip
    assert "p:ss" not in str(u)  # the password is never shown
    # no database, with or without the slash: ClickHouse's own `default` database, as
    # clickhouse-client and clickhouse-driver URLs have it; shown in every message
    for text in ("clickhouse://h:9000/", "clickhouse://h"):
        assert str(parse_clickhouse_url(text)) == "clickhouse://default@h:9000/default"


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ('url = "http://h/db"\n', 4, "pdns.url", "clickhouse://HOST:9000/DATABASE"),
        ('url = "clickhouse://h/my-db"\n', 4, "pdns.url", "bad database name"),
        ('url = "clickhouse://h:99999/db"\n', 4, "pdns.url", "bad port"),
        ('password_file = "nope.txt"\n', 4, "pdns.password_file", "cannot read"),
        ('url = "clickhouse://h/db"\npath = "p.sqlite"\n', 4, "pdns.url", "not both"),
        ('url = "clickhouse://h/db"\nspool_size = "lots"\n', 5, "pdns.spool_size", "size"),
        # the server's own databases: mamori's system.query_log would clash with its own
        ('url = "clickhouse://h/system"\n', 4, "pdns.url", "'system' is ClickHouse's own"),
        ('url = "clickhouse://h/INFORMATION_SCHEMA"\n', 4, "pdns.url", "ClickHouse's own"),
        ('url = "clickhouse://h/information_schema"\n', 4, "pdns.url", "ClickHouse's own"),
        ('[store]\nurl = "clickhouse://h:9000/system"\n', 5, "store.url", "ClickHouse's own"),
        ('url = "clickhouse://h:0/db"\n', 4, "pdns.url", "port 0"),
        ('[store]\nurl = "clickhouse://h:0/db"\n', 5, "store.url", "port 0"),
        # a password in two places: neither silently wins
        (
            'url = "clickhouse://u:pw@h/db"\npassword_file = "pw"\n',
            5,
            "pdns.password_file",
            "give the password in the URL or in password_file, not both",
        ),
        (
            '[store]\nurl = "clickhouse://u:pw@h/db"\npassword_file = "pw"\n',
            6,
            "store.password_file",
            "give the password in the URL or in password_file, not both",
        ),
        ('password_file = "pw"\n', 4, "pdns.password_file", "needs pdns.url"),
        ('[store]\npassword_file = "pw"\n', 5, "store.password_file", "needs store.url"),
    ],
)
def test_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert (e.value.line, e.value.key) == (line, key)
    assert message in e.value.message
    assert str(e.value).startswith(f"{tmp_path / 'm.toml'}:{line}: {key}:")


def test_password_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = _load(tmp_path, 'url = "clickhouse://u@h/db"\npassword_file = "pw"\n')
    assert cfg.pdns.url is not None and cfg.pdns.password_file == tmp_path / "pw"
    from mamori.store.ch_conn import read_password

    assert read_password(cfg.pdns.url, cfg.pdns.password_file) == "s3cret"


@pytest.mark.parametrize("section", ["pdns", "store"])
def test_password_file_keeps_spaces_and_drops_only_the_line_end(
    tmp_path: Path, section: str
) -> None:
    from mamori.store.ch_conn import read_password

    (tmp_path / "pw").write_bytes(b" s3cret pw  \r\nsecond line\n")
    text = 'url = "clickhouse://u@h/db"\npassword_file = "pw"\n'
    cfg = _load(tmp_path, text if section == "pdns" else "[store]\n" + text)
    sect = cfg.pdns if section == "pdns" else cfg.store
    assert sect.url is not None
    assert read_password(sect.url, sect.password_file) == " s3cret pw  "


def test_check_connects_and_reports_version_and_schema(
    tmp_path: Path, clickhouse_url: str, clickhouse_server: object
) -> None:
    conf = tmp_path / "m.toml"
    conf.write_text(BASE + f'url = "{clickhouse_url}"\n[store]\npath = "{tmp_path}/m.db"\n')

    def check() -> str:
        r = subprocess.run([sys.executable, "-m", "mamori", "check", "--config", str(conf)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout

    first = check()
    assert "server 18.16.1" in first
    assert "0 tables present, 15 created" in first
    assert "server lacks: LowCardinality" in first
    assert "15 tables present, 0 created" in check()


def test_check_fails_clearly_when_clickhouse_is_not_there(tmp_path: Path) -> None:
    from tests.support.net import free_port

    conf = tmp_path / "m.toml"
    conf.write_text(BASE + f'url = "clickhouse://127.0.0.1:{free_port()}/db"\n')
    r = subprocess.run([sys.executable, "-m", "mamori", "check", "--config", str(conf)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0
    assert "[pdns] url clickhouse://default@127.0.0.1:" in r.stderr and "OK" not in r.stdout
