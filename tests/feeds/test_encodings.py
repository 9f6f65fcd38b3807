"""Byte-order marks and encodings of every file read as a list, a feed or a zone.

The rule (docs/reference/feeds.md, Encodings): a UTF-8 byte-order mark is
ignored; a UTF-16 or UTF-32 one selects that encoding; everything else is
UTF-8, and a line holding bytes that are not UTF-8 (Latin-1 ...) is rejected
with its line and column, never dropped in silence. Each case goes through the
real reading path (``sources.read`` for feeds, ``zone.load`` for zone files,
``guard.read_allowlist``), from a file on disk or over HTTP.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mamori.config import FeedConfig
from mamori.feeds import guard
from mamori.feeds.normalize import Entry
from mamori.feeds.parsers import FeedError
from mamori.feeds.sources import read
from mamori.policy import zone
from mamori.policy.rules import ZoneError
from tests.support.feedserver import FeedServer

BOM = b"\xef\xbb\xbf"

# Two rules per format: with a BOM in front, the first one used to be lost.
FORMATS = [
    ("adblock", "||a.example^\n||b.example^\n"),
    ("dnsmasq", "address=/a.example/0.0.0.0\naddress=/b.example/0.0.0.0\n"),
    (
        "unbound",
        'local-zone: "a.example" always_nxdomain\nlocal-zone: "b.example" always_nxdomain\n',
    ),
    (
        "bind",
        'zone "a.example" { type master; file "null.zone.file"; };\n'
        'zone "b.example" { type master; file "null.zone.file"; };\n',
    ),
    ("hosts", "0.0.0.0 a.example\n0.0.0.0 b.example\n"),
    ("domains", "a.example\nb.example\n"),
    ("csv", "host,threat\r\na.example,malware\r\nb.example,phishing\r\n"),  # as Excel saves it
    ("rpz", "$TTL 60\n@ SOA ns. h. 1 60 60 60 60\na.example CNAME .\nb.example CNAME .\n"),
    ("stix", ""),  # built below
]


def _stix() -> str:
    objs = [
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": f"indicator--00000000-0000-4000-8000-00000000000{i}",
            "created": "2026-01-01T00:00:00.000Z",
            "modified": "2026-01-01T00:00:00.000Z",
            "name": "kit",
            "pattern": f"[domain-name:value = '{n}']",
            "pattern_type": "stix",
            "valid_from": "2026-01-01T00:00:00Z",
        }
        for i, n in enumerate(("a.example", "b.example"))
    ]
    return json.dumps({"type": "bundle", "id": "bundle--1", "objects": objs}, indent=1)


def _text(fmt: str, text: str) -> str:
    return _stix() if fmt == "stix" else text


def _names(fmt: str, path: Path, tmp_path: Path) -> set[str]:
    result, _ = read(FeedConfig(name="t", path=path, format=fmt), tmp_path / "cache")
    assert not result.rejected, result.rejected
    return {e.value for e in result.entries if e.kind == "domain"}


@pytest.mark.parametrize(("fmt", "text"), FORMATS, ids=[f for f, _ in FORMATS])
def test_a_utf8_bom_loses_no_rule(fmt: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "list"
    path.write_bytes(BOM + _text(fmt, text).encode())
    assert _names(fmt, path, tmp_path) == {"a.example", "b.example"}


@pytest.mark.parametrize(("fmt", "text"), FORMATS, ids=[f for f, _ in FORMATS])
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_bom_are_decoded(
    fmt: str, text: str, codec: str, tmp_path: Path
) -> None:
    """Notepad's "Unicode" and PowerShell 5's ``>`` write UTF-16 LE with a BOM."""
    path = tmp_path / "list"
    data = _text(fmt, text).encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    assert _names(fmt, path, tmp_path) == {"a.example", "b.example"}


def test_a_spreadsheet_csv_keeps_its_reasons(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(BOM + b"host,threat\r\na.example,malware\r\nb.example,phishing\r\n")
    result, _ = read(FeedConfig(name="t", path=path, format="csv"), tmp_path / "cache")
    assert [(e.value, e.reason) for e in result.entries] == [
        ("a.example", "malware"),
        ("b.example", "phishing"),
    ]


def test_a_bom_over_http_and_from_the_cached_copy(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "list.txt").write_bytes(BOM + b"||a.example^\n||b.example^\n")
    srv = FeedServer(tmp_path / "www")
    feed = FeedConfig(name="t", url=f"http://127.0.0.1:{srv.port}/list.txt", format="adblock")
    try:
        first, how = read(feed, tmp_path / "cache")
        again, how_again = read(feed, tmp_path / "cache")  # 304: the cached copy
    finally:
        srv.close()
    assert how == "http 200" and how_again == "http 304 (unchanged)"
    for result in (first, again):
        assert {e.value for e in result.entries} == {"a.example", "b.example"}


@pytest.mark.parametrize("fmt", ["domains", "hosts", "adblock", "dnsmasq", "csv", "rpz"])
def test_latin1_bytes_reject_their_line_with_line_and_column(fmt: str, tmp_path: Path) -> None:
    """``bücher.example`` saved as Latin-1: not guessed at, not dropped in silence."""
    good, bad = {
        "domains": ("a.example", "b\xfccher.example"),
        "hosts": ("0.0.0.0 a.example", "0.0.0.0 b\xfccher.example"),
        "adblock": ("||a.example^", "||b\xfccher.example^"),
        "dnsmasq": ("address=/a.example/0.0.0.0", "address=/b\xfccher.example/0.0.0.0"),
        "csv": ("host\na.example", "b\xfccher.example"),
        "rpz": (
            "$TTL 60\n@ SOA ns. h. 1 60 60 60 60\na.example CNAME .",
            "b\xfccher.example CNAME .",
        ),
    }[fmt]
    path = tmp_path / "list"
    comment = ";" if fmt == "rpz" else "#"
    path.write_bytes(f"{comment} \xa9 2026 a Latin-1 comment\n{good}\n{bad}\n".encode("latin-1"))
    result, _ = read(FeedConfig(name="t", path=path, format=fmt), tmp_path / "cache")
    assert [e.value for e in result.entries if e.kind == "domain"] == ["a.example"]
    [(line, _text, why)] = result.rejected
    assert line == len(f"{comment}\n{good}\n".splitlines()) + 1
    assert "byte 0xFC" in why and "not UTF-8" in why, why


def test_stix_json_with_latin1_bytes_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(_stix().replace("kit", "caf\xe9").encode("latin-1"))
    with pytest.raises(FeedError, match=r"line \d+: byte 0xE9 .*not UTF-8"):
        read(FeedConfig(name="t", path=path, format="stix"), tmp_path / "cache")


def test_misp_directory_with_a_bom(tmp_path: Path) -> None:
    d = tmp_path / "misp"
    d.mkdir()
    uuid = "5f1a0c4e-0000-4000-8000-000000000001"
    (d / "manifest.json").write_bytes(BOM + json.dumps({uuid: {"timestamp": "1"}}).encode())
    event = {
        "Event": {
            "uuid": uuid,
            "info": "kit",
            "Attribute": [{"type": "domain", "value": "a.example", "to_ids": True}],
        }
    }
    (d / f"{uuid}.json").write_bytes(BOM + json.dumps(event).encode())
    result, _ = read(FeedConfig(name="t", path=d, format="misp"), tmp_path / "cache")
    assert result.entries == [Entry("domain", "a.example")]
    (d / f"{uuid}.json").write_bytes(json.dumps(event).replace("kit", "caf\xe9").encode("latin-1"))
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(FeedError, match=r"\.json: line 1: byte 0xE9 .*not UTF-8"):
        read(FeedConfig(name="t", path=d, format="misp"), tmp_path / "cache")


ZONE = "$TTL 60\n@ SOA ns. h. 1 60 60 60 60\n@ NS ns.\na CNAME .\nb CNAME .\n"
# The same zone in a form the fast loader leaves to dnspython (a quoted TXT).
ZONE_FULL = ZONE + 'c TXT "x"\n'


@pytest.mark.parametrize("text", [ZONE, ZONE_FULL], ids=["fast loader", "dnspython"])
@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-32"])
def test_zone_files_with_a_bom(text: str, codec: str, tmp_path: Path) -> None:
    path = tmp_path / "db.rpz"
    path.write_bytes(text.encode(codec))
    loaded = zone.load(path, "rpz.test.")
    assert {r.owner for r in loaded.rules()} >= {"a", "b"} and loaded.serial == 1


@pytest.mark.parametrize("text", [ZONE, ZONE_FULL], ids=["fast loader", "dnspython"])
def test_zone_file_with_latin1_bytes_names_file_and_line(text: str, tmp_path: Path) -> None:
    path = tmp_path / "db.rpz"
    path.write_bytes(("; (c) \xa9 us\n" + text + "caf\xe9 CNAME .\n").encode("latin-1"))
    with pytest.raises(ZoneError, match=rf"{path}:{len(text.splitlines()) + 2}: byte 0xE9"):
        zone.load(path, "rpz.test.")
    loaded = zone.load(path, "rpz.test.", "skip")  # skip: the rest loads, the line is reported
    assert {"a", "b"} <= {r.owner for r in loaded.rules()}
    assert len(loaded.skipped) == 1 and "not UTF-8" in loaded.skipped[0]


def test_allowlist_with_a_bom_and_utf16(tmp_path: Path) -> None:
    allow = tmp_path / "allow.txt"
    for data in (BOM + b"mycompany.example\n", "mycompany.example\r\n".encode("utf-16")):
        allow.write_bytes(data)
        assert guard.read_allowlist(allow) == {"mycompany.example"}


def test_allowlist_bad_lines_are_errors_naming_file_and_line(tmp_path: Path) -> None:
    """An allowlist line that cannot be read used to be dropped: the name it meant to
    protect would then be blocked with no word said."""
    allow = tmp_path / "allow.txt"
    allow.write_bytes("# ours\nmycompany.example\nb\xfccher.example\n".encode("latin-1"))
    with pytest.raises(FeedError, match=rf"{allow}:3: byte 0xFC at column 2 is not UTF-8"):
        guard.read_allowlist(allow)
    allow.write_text("mycompany.example\nnot a name\n")
    with pytest.raises(FeedError, match=rf"{allow}:2: "):
        guard.read_allowlist(allow)
    allow.write_text("*.mycompany.example\n")
    assert guard.read_allowlist(allow) == {"mycompany.example"}


def test_update_and_show_report_the_latin1_line(tmp_path: Path) -> None:
    """The rejected line is stored and shown with its byte written out (``\\xFC``)."""
    from click.testing import CliRunner

    from mamori.cli import cli

    (tmp_path / "list.txt").write_bytes(
        "# \xa9 2026\na.example\nb.example\nb\xfccher.example\n".encode("latin-1")
    )
    (tmp_path / "allow.txt").write_bytes(BOM + b"b.example\n")
    (tmp_path / "m.toml").write_text(
        f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp_path / "s" / "m.sqlite"}"\n'
        '[[feed]]\nname = "t"\npath = "list.txt"\nformat = "domains"\nmax_bad = 0.5\n'
        'allowlist = "allow.txt"\n'
    )
    conf = str(tmp_path / "m.toml")
    r = CliRunner().invoke(cli, ["feeds", "update", "--config", conf])
    assert r.exit_code == 0, r.output
    assert "t: 1 entries, +1 -0, 0 allow rules, 1 rejected, 1 refused by the guards" in r.output
    r = CliRunner().invoke(cli, ["feeds", "show", "t", "--config", conf])
    assert "line 4: byte 0xFC at column 2 is not UTF-8: b\\xFCcher.example" in r.output
    (tmp_path / "allow.txt").write_bytes("b\xfc.example\n".encode("latin-1"))
    r = CliRunner().invoke(cli, ["feeds", "diff", "t", "--config", conf])
    assert r.exit_code == 2 and f"{tmp_path / 'allow.txt'}:1: byte 0xFC" in r.output


def test_a_config_file_with_a_bom_loads_and_latin1_names_the_line(tmp_path: Path) -> None:
    from mamori import config
    from mamori.errors import ConfigError

    text = '[upstream]\nservers = ["127.0.0.1:53"]\n[[feed]]\nname = "t"\npath = "l.txt"\n'
    conf = tmp_path / "m.toml"
    conf.write_bytes(BOM + (text + 'format = "hosts"\n').encode())
    assert config.load(conf).feeds[0].name == "t"
    conf.write_bytes((text + '# caf\xe9\nformat = "hosts"\n').encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{conf}:6: byte 0xE9 at column 6 is not UTF-8"):
        config.load(conf)
