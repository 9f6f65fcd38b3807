"""Config for named devices and encrypted DNS around the listeners: MAC addresses as
client_ids, trust_client_mac, doh_canary, upstream ca_file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamori import config
from mamori.errors import ConfigError
from tests.support.testca import TestCA

UP = '[upstream]\nservers = ["127.0.0.1:53"]\n'


def _load(tmp_path: Path, text: str) -> config.Config:
    p = tmp_path / "m.toml"
    p.write_text(text)
    return config.load(p)


def test_client_ids_take_mac_addresses_in_the_log_s_form(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        UP + '[[group]]\nname = "kids"\n'
        'client_ids = ["A0-B1-C2-D3-E4-F5", "Phone", "aa:bb:cc:dd:ee:0f"]\n',
    )
    assert cfg.groups[0].client_ids == ("a0:b1:c2:d3:e4:f5", "phone", "aa:bb:cc:dd:ee:0f")


@pytest.mark.parametrize("bad", ["a0:b1:c2:d3:e4", "a0:b1-c2:d3:e4:f5", "a0:b1:c2:d3:e4:g5", "x y"])
def test_a_client_id_neither_name_nor_mac_names_the_line_and_key(tmp_path: Path, bad: str) -> None:
    with pytest.raises(
        ConfigError, match=r"m\.toml:\d+: group\.client_ids: .*neither a device name"
    ):
        _load(tmp_path, UP + f'[[group]]\nname = "kids"\nclient_ids = ["{bad}"]\n')


def test_trust_client_mac_is_nobody_by_default_and_takes_prefixes(tmp_path: Path) -> None:
    assert _load(tmp_path, UP).server.trust_client_mac == ()
    cfg = _load(tmp_path, '[server]\ntrust_client_mac = ["192.168.1.1", "fd00::/8"]\n' + UP)
    assert cfg.server.trust_client_mac == ("192.168.1.1/32", "fd00::/8")
    with pytest.raises(ConfigError, match=r"server\.trust_client_mac: 'lan' is not an IP prefix"):
        _load(tmp_path, '[server]\ntrust_client_mac = ["lan"]\n' + UP)


def test_doh_canary_adds_the_built_in_zone_after_the_rules(tmp_path: Path) -> None:
    assert "doh-canary.mamori." not in [z.name for z in _load(tmp_path, UP).rpz]
    cfg = _load(tmp_path, "[server]\ndoh_canary = true\n" + UP)
    names = [z.name for z in cfg.rpz]
    assert names[:2] == ["rules.mamori.", "doh-canary.mamori."]
    canary = cfg.rpz[1]
    assert canary.file is not None and canary.file.is_file()  # shipped in the package
    assert "use-application-dns.net" in canary.file.read_text()
    with pytest.raises(ConfigError, match=r"rpz\.name: doh-canary\.mamori\. is mamori's"):
        _load(tmp_path, UP + '[[rpz]]\nname = "doh-canary.mamori"\nfile = "x.rpz"\n')


def test_upstream_ca_file_is_relative_to_the_config_and_must_load(tmp_path: Path) -> None:
    ca = TestCA.make(tmp_path / "ca")
    cfg = _load(tmp_path, UP + 'ca_file = "ca/ca.pem"\n')
    assert cfg.upstream.ca_file == ca.cert
    with pytest.raises(ConfigError, match=r"upstream\.ca_file: cannot load CA certificates from"):
        _load(tmp_path, UP + 'ca_file = "missing.pem"\n')
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"m\.toml:\d+: upstream\.ca_file: cannot load"):
        _load(tmp_path, UP + 'ca_file = "junk.pem"\n')


@pytest.mark.parametrize(
    ("server", "text"),
    [
        ("tls://192.0.2.1#dns.example.net", "tls://192.0.2.1:853#dns.example.net"),
        ("tls://[2001:db8::1]:8853", "tls://[2001:db8::1]:8853"),
        ("https://dns.example.net/dns-query", "https://dns.example.net:443/dns-query"),
        (
            "https://192.0.2.1:8443#dns.example.net",
            "https://192.0.2.1:8443/dns-query#dns.example.net",
        ),
    ],
)
def test_encrypted_upstreams_parse(tmp_path: Path, server: str, text: str) -> None:
    cfg = _load(tmp_path, f'[upstream]\nservers = ["{server}"]\n')
    assert str(cfg.upstream.servers[0]) == text


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("tls://dns.example.net", "is not an IP address"),
        ("tls://192.0.2.1#not_a_name", "is not a host name to verify"),
        ("https://dns.example.net/q?x=1", "bad URL"),
        ("quic://192.0.2.1", "unknown transport 'quic'"),
    ],
)
def test_bad_encrypted_upstreams_say_why(tmp_path: Path, server: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"upstream\.servers: .*{message}"):
        _load(tmp_path, f'[upstream]\nservers = ["{server}"]\n')
