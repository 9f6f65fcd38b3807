"""Each command requires only the config sections it uses (issue 13, item 8): a config
that only publishes zones or feeds has no [upstream], and only `mamori serve` (the
resolver) asks for one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori.cli import cli

RPZ = "$TTL 60\n@ SOA ns.p.test. h.p.test. 7 60 30 600 30\n@ NS localhost.\nbad.example CNAME .\n"


@pytest.fixture
def zones_only(tmp_path: Path) -> Path:
    """A publisher's config: a zone to publish and a feed to publish, nothing else."""
    (tmp_path / "p.test.zone").write_text(RPZ)
    (tmp_path / "phish.txt").write_text("login-bank.example\n*.phish-kit.example\n")
    conf = tmp_path / "publisher.toml"
    conf.write_text(
        f'[store]\npath = "{tmp_path / "m.db"}"\n'
        '[[rpz]]\nname = "p.test"\nfile = "p.test.zone"\npublish = true\n'
        '[[feed]]\nname = "phish"\npath = "phish.txt"\nformat = "domains"\n'
        'category = "phishing"\nenforce = false\npublish = true\n'
    )
    return conf


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def test_feeds_update_needs_no_upstream(zones_only: Path) -> None:
    code, out = _run("feeds", "update", "--config", str(zones_only))
    assert code == 0, out
    assert "phish: 2 entries" in out
    assert (zones_only.parent / "feeds" / "phish.rpz").exists()


def test_check_needs_no_upstream_and_says_serve_would(zones_only: Path) -> None:
    code, out = _run("check", "--config", str(zones_only))
    assert code == 0, out
    assert "upstreams: none: `mamori serve` needs [upstream] servers" in out
    assert "rpz:       p.test. serial 7, 1 rules" in out and "published" in out


def test_other_commands_need_no_upstream(zones_only: Path) -> None:
    for args in (
        ["zones", "status"],
        ["zones", "hits"],
        ["feeds", "list"],
        ["keys", "list"],
    ):
        code, out = _run(*args, "--config", str(zones_only))
        assert code == 0, (args, out)
        assert "upstream" not in out, (args, out)


def test_serve_still_requires_upstream(zones_only: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "serve", "--config", str(zones_only)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert f"{zones_only}: upstream.servers: no upstream servers configured" in r.stderr
