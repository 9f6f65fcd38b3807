"""`mamori profile apple`: an Apple .mobileconfig that names the device (plistlib reads it)."""

from __future__ import annotations

import plistlib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori.cli import cli

CONFIG = """[server]
doh = ["{doh}"]
dot = ["192.0.2.53:853", "[2001:db8::53]:853", "127.0.0.1:853"]
[tls]
cert = "c.pem"
key = "k.pem"
server_name = "dns.example.net"
"""


def _config(tmp_path: Path, doh: str = "0.0.0.0:443", tls: bool = True) -> Path:
    text = CONFIG.format(doh=doh)
    if not tls:
        text = text.replace('server_name = "dns.example.net"\n', "")
    p = tmp_path / "m.toml"
    p.write_text(text)
    return p


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def test_doh_profile_is_a_valid_plist_with_the_device_in_the_url(tmp_path: Path) -> None:
    out = tmp_path / "phone.mobileconfig"
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "profile", "apple", "--config", str(_config(tmp_path)),
         "--client-id", "Kids-Phone", "--output", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = plistlib.loads(out.read_bytes())
    assert doc["PayloadType"] == "Configuration" and doc["PayloadVersion"] == 1
    (payload,) = doc["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.dnsSettings.managed"
    assert payload["PayloadVersion"] == 1
    assert payload["DNSSettings"] == {
        "DNSProtocol": "HTTPS",
        "ServerURL": "https://dns.example.net/dns-query/kids-phone",
    }
    for d in (doc, payload):  # identifiers and UUIDs as Apple checks them
        assert d["PayloadIdentifier"] and len(d["PayloadUUID"]) == 36
    assert doc["PayloadUUID"] != payload["PayloadUUID"]
    assert payload["PayloadIdentifier"].startswith(doc["PayloadIdentifier"])


def test_doh_port_and_dot_server_name(tmp_path: Path) -> None:
    code, text = _run("profile", "apple", "--config", str(_config(tmp_path, "192.0.2.53:8443")),
                      "--client-id", "tablet")  # fmt: skip
    assert code == 0
    dns = plistlib.loads(text.encode())["PayloadContent"][0]["DNSSettings"]
    assert dns["ServerURL"] == "https://dns.example.net:8443/dns-query/tablet"
    assert dns["ServerAddresses"] == ["192.0.2.53"]
    code, text = _run("profile", "apple", "--config", str(_config(tmp_path)), "--client-id",
                      "tablet", "--transport", "dot")  # fmt: skip
    assert code == 0
    dns = plistlib.loads(text.encode())["PayloadContent"][0]["DNSSettings"]
    # loopback is no address for a phone
    assert dns == {"DNSProtocol": "TLS", "ServerName": "tablet.dns.example.net",
                   "ServerAddresses": ["192.0.2.53", "2001:db8::53"]}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client-id", "kids phone"], "client id 'kids phone': use 1-63 letters"),
        (["--client-id", "-phone"], "client id '-phone'"),
        (["--client-id", "a" * 64], "use 1-63 letters"),
        (["--client-id", "a0:b1:c2:d3:e4:f5"], "use 1-63 letters"),
    ],
)
def test_bad_client_ids_are_refused_and_nothing_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "x.mobileconfig"
    code, text = _run("profile", "apple", "--config", str(_config(tmp_path)), *args, "-o", str(out))
    assert code == 2 and message in text and not out.exists()


def test_a_profile_needs_the_server_name(tmp_path: Path) -> None:
    code, text = _run("profile", "apple", "--config", str(_config(tmp_path, tls=False)),
                      "--client-id", "phone")  # fmt: skip
    assert code == 2 and "[tls] server_name is not set" in text
