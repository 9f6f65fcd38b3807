"""The first start of the console makes an admin user and says its password once."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from mamori import config
from mamori.web.app import create_app, keys_path
from mamori.web.keys import KeyStore


def test_first_admin_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "m.toml").write_text(
        f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp_path / "m.db"}"\n'
    )
    cfg = config.load(tmp_path / "m.toml")
    with caplog.at_level(logging.WARNING):
        create_app(cfg)
    secret = tmp_path / "initial-admin-password"
    password = secret.read_text().strip()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert f"created user admin with password {password}" in caplog.text
    keys = KeyStore(keys_path(cfg))
    try:
        assert keys.verify_user("admin", password) and not keys.verify_user("admin", "nope")
        keys.add_user("admin", "a new long password")
    finally:
        keys.close()
    caplog.clear()
    create_app(cfg)  # a user exists: nothing new
    assert "created user" not in caplog.text and secret.read_text().strip() == password
