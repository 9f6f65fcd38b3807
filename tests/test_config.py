from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mamori import config
from mamori.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _load(tmp_path: Path, text: str, resolv: str = "") -> config.Config:
    p = tmp_path / "m.toml"
    p.write_text(text)
    rc = tmp_path / "resolv.conf"
    rc.write_text(resolv)
    return config.load(p, resolv_conf=str(rc))


def test_defaults_and_relative_store_path(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[upstream]\nservers = ["127.0.0.1:5300"]\n[store]\npath = "x.db"\n')
    assert cfg.server.listen[0] == config.Endpoint("127.0.0.1", 53)
    assert cfg.server.allow == ("127.0.0.0/8", "::1/128")
    assert cfg.upstream.servers[0].endpoint == config.Endpoint("127.0.0.1", 5300)
    assert cfg.store.path == tmp_path / "x.db"


def test_listen_and_upstream_forms(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[server]\nlisten = ["127.0.0.1:5353", "[::1]:5353", "::1"]\n'
        '[upstream]\nservers = ["tcp://[::1]:5300", "127.0.0.2"]\n[cache]\nmax_bytes = "64M"\n',
    )
    assert [str(e) for e in cfg.server.listen] == ["127.0.0.1:5353", "[::1]:5353", "[::1]:53"]
    assert [str(u) for u in cfg.upstream.servers] == ["tcp://[::1]:5300", "udp://127.0.0.2:53"]
    assert cfg.cache.max_bytes == 64 * 1024 * 1024


def test_system_upstream_reads_the_given_resolv_conf(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[upstream]\nservers = ["system"]\n',
        resolv="# comment\nnameserver 127.0.0.53\nnameserver ::1\nsearch x\n",
    )
    assert [str(u.endpoint) for u in cfg.upstream.servers] == ["127.0.0.53:53", "[::1]:53"]


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ('[server]\nlisten = ["127.0.0.1:53"]\nworkers = 0\n', 3, "server.workers", "between"),
        ('[server]\n\nallow = ["10.0.0.0/33"]\n', 3, "server.allow", "not an IP prefix"),
        ("[server]\nbogus = 1\n", 2, "server.bogus", "unknown key"),
        ("[srever]\nlisten = 1\n", 1, "srever", "unknown section"),
        ('[upstream]\nservers = ["dns.google"]\n', 2, "upstream.servers", "not an IP address"),
        ("[cache]\nmin_ttl = 100\nmax_ttl = 10\n", 2, "cache.min_ttl", "larger"),
        ('[server]\nrate_limit_action = "maybe"\n', 2, "server.rate_limit_action", "one of"),
    ],
)
def test_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, words: str
) -> None:
    if "upstream" not in text:
        text += '[upstream]\nservers = ["127.0.0.1"]\n'
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, text)
    e = ei.value
    assert (e.line, e.key) == (line, key)
    assert str(e).startswith(f"{tmp_path / 'm.toml'}:{line}: {key}: ")
    assert words in str(e)


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, '[server]\nlisten = ["127.0.0.1"\n')
    assert ei.value.line is not None and "TOML syntax error" in str(ei.value)


def test_missing_upstreams_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no upstream servers"):
        _load(tmp_path, "[server]\nworkers = 1\n")


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[upstream]\nservers = ["127.0.0.1:5300"]\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[upstream]\nservers = ["127.0.0.1:5300"]\ntimeout = "soon"\n')
    ok = subprocess.run(
        [sys.executable, "-m", "mamori", "check", "--config", str(good)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "OK" in ok.stdout
    ko = subprocess.run(
        [sys.executable, "-m", "mamori", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert ko.returncode != 0
    assert f"{bad}:3: upstream.timeout: must be a number" in ko.stderr


def test_example_config_loads() -> None:
    rc = REPO / "tests" / "data" / "resolv.conf"
    cfg = config.load(REPO / "examples" / "mamori.toml", resolv_conf=str(rc))
    assert cfg.server.listen == (config.Endpoint("127.0.0.1", 5353),)


UP = '[upstream]\nservers = ["127.0.0.1:5300"]\n[store]\npath = "db/m.db"\n'


def test_transferred_zone_config_and_default_copy_path(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        UP + '[[rpz]]\nname = "rpz.example"\nprimary = ["192.0.2.53", "[2001:db8::53]:5300"]\n'
        'tsig = "xfr-key:HMAC-SHA256:c2VjcmV0LXNlY3JldC1zZWNyZXQ="\n',
    )
    assert cfg.rpz[0].name == "rules.mamori."  # the local rules come first
    z = cfg.rpz[1]
    assert [str(p) for p in z.primary] == ["192.0.2.53:53", "[2001:db8::53]:5300"]
    assert z.tsig == config.TsigSpec("xfr-key.", "hmac-sha256", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=")
    assert "c2Vj" not in str(z.tsig)  # the secret never shows in logs
    assert z.file == tmp_path / "db" / "zones" / "rpz.example.zone"
    assert z.on_expire == "stop"


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ('tsig = "k:hmac-md4:c2VjcmV0"', "rpz.tsig", "unknown algorithm"),
        ('tsig = "k:hmac-sha256:not base64!"', "rpz.tsig", "not base64"),
        ('tsig = "only-a-name"', "rpz.tsig", "name:algorithm:base64secret"),
        ('primary = "ns.example.com"', "rpz.primary", "not an IP address"),
        ('on_expire = "maybe"', "rpz.on_expire", "must be one of"),
    ],
)
def test_transfer_settings_errors_name_file_line_key(
    tmp_path: Path, body: str, key: str, message: str
) -> None:
    text = UP + f'[[rpz]]\nname = "rpz.example"\nprimary = "192.0.2.53"\n{body}\n'
    if body.startswith("primary"):
        text = UP + f'[[rpz]]\nname = "rpz.example"\n{body}\n'
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert key in str(e.value) and message in str(e.value)
    line = text.splitlines().index(body) + 1
    assert f"m.toml:{line}: {key}:" in str(e.value)


def test_tsig_without_primary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rpz\.tsig: a TSIG key needs primary"):
        _load(
            tmp_path, UP + '[[rpz]]\nname = "z"\nfile = "z.rpz"\ntsig = "k:hmac-sha256:c2VjcmV0"\n'
        )


def test_check_lists_a_transferred_zone_not_yet_transferred(tmp_path: Path) -> None:
    conf = tmp_path / "m.toml"
    conf.write_text(UP + '[[rpz]]\nname = "feed.example"\nprimary = "192.0.2.53"\npublish = true\n')
    out = subprocess.run(
        [sys.executable, "-m", "mamori", "check", "--config", str(conf)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        "rpz:       feed.example. serial 0, 0 rules, policy given,"
        " from 192.0.2.53:53 (not transferred yet), published"
    ) in out


@pytest.mark.parametrize("section", ["alert_sink", "feed", "group", "rpz"])
def test_an_array_of_plain_values_where_tables_belong_is_a_config_error(
    tmp_path: Path, section: str
) -> None:
    """Found by fuzzing: `alert_sink = ["x"]` raised AttributeError instead."""
    with pytest.raises(ConfigError, match=rf"{section}: use \[\[{section}\]\]"):
        _load(tmp_path, f'{section} = ["27/8"]\n[upstream]\nservers = ["127.0.0.1:53"]\n')


def test_a_device_name_twice_in_one_group_says_so(tmp_path: Path) -> None:
    text = (
        '[upstream]\nservers = ["127.0.0.1:53"]\n'
        '[[group]]\nname = "y9"\nclient_ids = ["dev1", "DEV1"]\n'
    )
    with pytest.raises(ConfigError, match=r"group\.client_ids: dev1 is listed twice"):
        _load(tmp_path, text)


TLS = '[tls]\ncert = "c.pem"\nkey = "k.pem"\n[upstream]\nservers = ["127.0.0.1"]\n'


@pytest.mark.parametrize(
    ("server", "line", "key"),
    [
        ('dot = ["127.0.0.1:8853"]\ndoh = ["127.0.0.1:8853"]\n', 3, "server.doh"),
        ('listen = ["127.0.0.1:8853"]\ndot = ["127.0.0.1:8853"]\n', 3, "server.dot"),
        ('listen = ["127.0.0.1:8853"]\ndoq = ["127.0.0.1:8853"]\n', 3, "server.doq"),
    ],
)
def test_two_of_our_listeners_on_one_port_and_protocol_is_a_config_error(
    tmp_path: Path, server: str, line: int, key: str
) -> None:
    with pytest.raises(ConfigError, match="is also in") as ei:
        _load(tmp_path, "[server]\n" + server + TLS)
    assert (ei.value.line, ei.value.key) == (line, key)


def test_dot_and_doq_may_share_a_port_and_tcp_off_frees_listen(tmp_path: Path) -> None:
    cfg = _load(tmp_path, '[server]\ndot = ["127.0.0.1:853"]\ndoq = ["127.0.0.1:853"]\n' + TLS)
    assert cfg.server.dot == cfg.server.doq
    text = '[server]\ntcp = false\nlisten = ["127.0.0.1:8853"]\ndot = ["127.0.0.1:8853"]\n'
    assert _load(tmp_path, text + TLS).server.dot[0].port == 8853


def test_a_config_named_like_the_console_edits_file_is_refused(tmp_path: Path) -> None:
    """``console.toml`` beside ``[store] path`` is where the console keeps its edits: a
    config file of that name there would be read twice and overwritten by the console."""
    path = tmp_path / "console.toml"
    path.write_text(
        f'[upstream]\nservers = ["127.0.0.1:9"]\n[store]\npath = "{tmp_path / "m.db"}"\n'
    )
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert e.value.key == "store.path" and e.value.line == 4
    assert "where the console keeps its edits" in str(e.value)
    (tmp_path / "etc").mkdir()
    moved = tmp_path / "etc" / "console.toml"  # the same name elsewhere: fine
    moved.write_text(path.read_text())
    assert config.load(moved).store.path == tmp_path / "m.db"
