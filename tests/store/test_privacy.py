"""store/privacy.py: what ``[store] client_addresses`` keeps of an address."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamori import config
from mamori.errors import ConfigError
from mamori.store.privacy import NO_ADDRESS, masker, truncate


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
