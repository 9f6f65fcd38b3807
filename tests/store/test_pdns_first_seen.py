"""The passive DNS store's queries for newly observed domains (``PdnsStore``:
``names_first_seen_since``, ``earliest_below``, ``observed_since``) on real SQLite."""

from __future__ import annotations

from pathlib import Path

from mamori.store.pdns_sqlite import PdnsSQLite

T = 1_800_000_000


def _store(tmp_path: Path) -> PdnsSQLite:
    store = PdnsSQLite(tmp_path / "pdns.sqlite")
    store.write(
        {
            ("example.com.", 1, "192.0.2.1", "com."): [T - 500, T, 1],
            ("a.b.example.com.", 1, "192.0.2.2", "com."): [T + 10, T + 20, 1],
            ("twice.example.net.", 1, "192.0.2.3", "net."): [T + 30, T + 40, 1],
            ("twice.example.net.", 28, "2001:db8::3", "net."): [T - 30, T + 40, 1],
            ("badexample.com.", 1, "192.0.2.4", "com."): [T - 9000, T, 1],
            ("example.com.evil.", 1, "192.0.2.5", "evil."): [T - 8000, T, 1],
            ("example.co.", 1, "192.0.2.6", "co."): [T + 50, T + 60, 2],
        },
        nx={("never.example.org.", 1): [T - 99_999, T, 5]},  # NXDOMAIN: not observed
    )
    return store


def test_names_first_seen_since_takes_each_names_earliest_tuple(tmp_path: Path) -> None:
    store = _store(tmp_path)
    # twice.example.net has a tuple first seen before T: not first seen since T
    assert store.names_first_seen_since(T) == [("a.b.example.com.", T + 10),
                                               ("example.co.", T + 50)]  # fmt: skip
    assert store.names_first_seen_since(T, limit=1) == [("a.b.example.com.", T + 10)]
    assert store.names_first_seen_since(T + 51) == []


def test_earliest_below_covers_the_domain_and_its_subtree_only(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.earliest_below("example.com.") == T - 500  # not badexample.com, .evil
    assert store.earliest_below("b.example.com") == T + 10
    assert store.earliest_below("EXAMPLE.CO.") == T + 50
    assert store.earliest_below("example.org.") is None  # only an NXDOMAIN answer


def test_observed_since_is_the_earliest_first_seen(tmp_path: Path) -> None:
    assert _store(tmp_path).observed_since() == T - 9000
    assert PdnsSQLite(tmp_path / "empty.sqlite").observed_since() is None
