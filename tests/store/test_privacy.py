"""store/privacy.py: what ``[store] client_addresses`` keeps of an address."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mamori import config
from mamori.errors import ConfigError
from mamori.store.forget import TARGETS, forget_client
from mamori.store.privacy import NO_ADDRESS, masker, truncate
from mamori.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("address", "kept"),
    [
        ("192.0.2.77", "192.0.2.0"),
        ("10.1.2.255", "10.1.2.0"),
        ("2001:db8:1:2:3::7", "2001:db8:1::"),
        ("2001:db8:1::", "2001:db8:1::"),
        ("::1", "::"),
        ("fe80::1%eth0", "fe80::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("", NO_ADDRESS),
        ("not an address", NO_ADDRESS),
    ],
)
def test_truncate(address: str, kept: str) -> None:
    assert truncate(address) == kept
    assert masker("truncate")(address) == kept
    assert masker("truncate")(address) == kept  # memoised, same answer


def test_full_and_none() -> None:
    assert masker("full")("192.0.2.77") == "192.0.2.77"
    assert masker("none")("192.0.2.77") == NO_ADDRESS == "-"
    assert masker("none")("2001:db8::1") == NO_ADDRESS


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="client_addresses"):
        masker("hash")


def test_config_key(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    base = '[upstream]\nservers = ["127.0.0.1:53"]\n[store]\n'
    path.write_text(base)
    assert config.load(path).store.client_addresses == "full"
    path.write_text(base + 'client_addresses = "truncate"\n')
    assert config.load(path).store.client_addresses == "truncate"
    path.write_text(base + 'client_addresses = "hashed"\n')
    with pytest.raises(ConfigError, match=r"client_addresses.*full, truncate, none"):
        config.load(path)


def _row(client: str) -> tuple[object, ...]:
    return (1e9, client, "a.test.", 1, 0, "", 0, "", False, "udp", "", "", "", "", "resolved", "",
            "", "")  # fmt: skip


def test_forget_client_address_or_network(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "mamori.db")
    rows = ["192.0.2.7", "192.0.2.8", "192.0.2.0", "-", "2001:db8:1::", "::ffff:192.0.2.7"]
    store.write_queries([_row(c) for c in rows])  # type: ignore[misc]
    store.close()

    def left() -> list[str]:
        with sqlite3.connect(tmp_path / "mamori.db") as db:
            return sorted(c for (c,) in db.execute("SELECT client FROM query_log"))

    assert forget_client(tmp_path / "mamori.db", "192.0.2.7") == {"mamori.db": 2}
    assert left() == sorted(["192.0.2.8", "192.0.2.0", "-", "2001:db8:1::"])
    assert forget_client(tmp_path / "mamori.db", "192.0.2.0/24") == {"mamori.db": 2}
    assert forget_client(tmp_path / "mamori.db", "2001:db8::/32") == {"mamori.db": 1}
    assert left() == ["-"]  # kept without an address: nothing to match
    with pytest.raises(ValueError):
        forget_client(tmp_path / "mamori.db", "not-an-address")


def test_forget_targets_are_the_files_written(tmp_path: Path) -> None:
    from mamori.alerts.engine import history_path
    from mamori.discovery.brand_store import brand_db_path
    from mamori.web.blockpage import reports_path

    path = tmp_path / "m.toml"
    path.write_text('[upstream]\nservers = ["127.0.0.1:53"]\n')
    cfg = config.load(path)
    written = {
        "",
        reports_path(cfg).name,
        history_path(cfg).name,
        brand_db_path(cfg.store.path).name,
    }
    assert {t.file for t in TARGETS} == written


def test_forget_client_erases_it_from_the_blocked_clients_per_hour(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "mamori.db")
    blocked = list(_row("192.0.2.7"))
    blocked[10], blocked[14] = "bad.rpz.", "blocked"  # policy_zone, outcome
    store.write_queries([tuple(blocked), tuple(blocked)])  # type: ignore[list-item]
    store.close()
    with sqlite3.connect(tmp_path / "mamori.db") as db:
        assert db.execute("SELECT client, n FROM block_clients").fetchall() == [("192.0.2.7", 2)]
    # the two query-log rows and the one aggregate row
    assert forget_client(tmp_path / "mamori.db", "192.0.2.7") == {"mamori.db": 3}
    with sqlite3.connect(tmp_path / "mamori.db") as db:
        assert db.execute("SELECT count(*) FROM block_clients").fetchone() == (0,)
        assert db.execute("SELECT qname, n FROM block_counts").fetchall() == [("a.test.", 2)]
