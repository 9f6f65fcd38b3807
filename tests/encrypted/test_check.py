"""`mamori check` loads the [tls] certificate of the encrypted listeners: a key that
does not match, or a file that is missing, is an error naming the files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.encrypted.certs import Pki, make_pki
from tests.support.mamori_proc import REPO


def _check(tmp: Path, cert: Path, key: Path) -> subprocess.CompletedProcess[str]:
    conf = tmp / "m.toml"
    conf.write_text(
        '[server]\nlisten = ["127.0.0.1:5353"]\ndot = ["127.0.0.1:8853"]\n'
        f'[tls]\ncert = "{cert}"\nkey = "{key}"\n[store]\npath = "{tmp / "m.db"}"\n'
    )
    return subprocess.run([sys.executable, "-m", "mamori", "check", "--config", str(conf)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip


def test_check_shows_the_encrypted_listeners(tmp_path: Path, pki: Pki) -> None:
    r = _check(tmp_path, pki.cert, pki.key)
    assert r.returncode == 0, r.stderr
    assert f"dot:       127.0.0.1:8853 (certificate {pki.cert})" in r.stdout


def test_check_refuses_a_key_that_does_not_match(tmp_path: Path, pki: Pki) -> None:
    other = make_pki(tmp_path, tag="-other")
    r = _check(tmp_path, pki.cert, other.key)
    assert r.returncode != 0
    assert "key does not match the certificate" in r.stderr and str(pki.cert) in r.stderr


def test_check_refuses_a_missing_certificate(tmp_path: Path, pki: Pki) -> None:
    r = _check(tmp_path, tmp_path / "gone.pem", pki.key)
    assert r.returncode != 0 and "gone.pem" in r.stderr
