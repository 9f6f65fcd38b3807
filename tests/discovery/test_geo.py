"""discovery.geo: AS and country of addresses from an iptoasn TSV and MaxMind DB files
written by the test (mmdb-writer), read back through the maxminddb reader."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from mamori import config as cfgmod
from mamori.discovery.geo import GeoError, GeoHolder, GeoInfo, Ip2Asn, open_geo, parse_asn
from mamori.errors import ConfigError
from mamori.store.pdns_keys import ip_key
from tests.support.geodb import NETS, write_asn_mmdb, write_country_mmdb, write_tsv

CASES = [
    ("192.0.2.1", GeoInfo(64500, "EXAMPLE-HOSTING", "JP")),
    ("192.0.2.127", GeoInfo(64500, "EXAMPLE-HOSTING", "JP")),  # last address of a range
    ("192.0.2.128", GeoInfo(64501, "OTHER-NET", "DE")),  # first of the next
    ("2001:db8::53", GeoInfo(64500, "EXAMPLE-HOSTING", "JP")),
    ("2001:db8:8000::1", None),  # past the /33
    ("203.0.113.9", GeoInfo(64502, "BULLETPROOF-LTD", "RU")),
    ("192.0.3.0", None),
    ("not-an-address", None),
]


@pytest.mark.parametrize(("address", "expected"), CASES)
def test_tsv_and_mmdb_give_the_same_answer(tmp_path: Path, address: str, expected: object) -> None:
    tsv = open_geo([], [write_tsv(tmp_path / "ip2asn.tsv")], builtin_country=False)
    mmdb = open_geo(
        [write_asn_mmdb(tmp_path / "asn.mmdb"), write_country_mmdb(tmp_path / "cc.mmdb")],
        [],
        builtin_country=False,
    )
    assert tsv.lookup(address) == expected
    assert mmdb.lookup(address) == expected
    mmdb.close()


def test_not_routed_ranges_have_no_as_and_gzip_tsv_reads(tmp_path: Path) -> None:
    plain = write_tsv(tmp_path / "ip2asn.tsv")
    gz = tmp_path / "ip2asn.tsv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    t = Ip2Asn(gz)
    assert len(t) == len(NETS) + 1
    key = ip_key("100.64.1.1")
    assert key is not None
    assert t.lookup(int.from_bytes(key)) == GeoInfo(None, "", "")


def test_an_unsorted_tsv_is_sorted_and_still_bisects(tmp_path: Path) -> None:
    lines = write_tsv(tmp_path / "ip2asn.tsv").read_text().splitlines()
    (tmp_path / "shuffled.tsv").write_text("\n".join(reversed(lines)) + "\n")
    geo = open_geo([], [tmp_path / "shuffled.tsv"], builtin_country=False)
    for address, expected in CASES:
        assert geo.lookup(address) == expected, address


def test_an_asn_file_and_a_country_file_combine_and_builtin_rir_data_fills_in(
    tmp_path: Path,
) -> None:
    only_asn = open_geo([write_asn_mmdb(tmp_path / "asn.mmdb")], [], builtin_country=False)
    assert only_asn.lookup("203.0.113.9") == GeoInfo(64502, "BULLETPROOF-LTD", "")
    only_asn.close()
    # iptocc's RIR data: 133.0.0.0/8 is JPNIC's (assigned to Japan since 1997)
    builtin = open_geo([write_asn_mmdb(tmp_path / "asn.mmdb")], [], builtin_country=True)
    assert builtin.lookup("133.11.0.1") == GeoInfo(None, "", "JP")
    assert builtin.lookup("203.0.113.9") == GeoInfo(64502, "BULLETPROOF-LTD", "")  # TEST-NET-3
    builtin.close()


def test_asn_ranges_merge_adjacent_networks_of_every_source(tmp_path: Path) -> None:
    tsv = write_tsv(tmp_path / "ip2asn.tsv")
    geo = open_geo([write_asn_mmdb(tmp_path / "asn.mmdb")], [tsv], builtin_country=False)
    spans = [(_text(lo), _text(hi)) for lo, hi in geo.asn_ranges(64500)]
    assert spans == [
        ("192.0.2.0", "192.0.2.127"),
        ("198.51.100.0", "198.51.100.255"),
        ("2001:db8::", "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff"),
    ]
    assert geo.asn_ranges(65000) == []
    geo.close()


def _text(key: bytes) -> str:
    from mamori.discovery.geo import key_text

    return key_text(key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.0\t192.0.2.255\n", "ip2asn.tsv:2: expected range_start"),
        ("192.0.2.0\tnope\t1\tJP\tX\n", "ip2asn.tsv:2: not an address range"),
        ("192.0.2.0\t192.0.2.9\tAS1\tJP\tX\n", "ip2asn.tsv:2: not an AS number"),
        ("192.0.2.9\t192.0.2.0\t1\tJP\tX\n", "ip2asn.tsv:2: range ends before it starts"),
        ("192.0.2.0\t192.0.2.9\t4294967296\tJP\tX\n", "ip2asn.tsv:2: not an AS number"),
        ("192.0.2.0\t192.0.2.9\t+5\tJP\tX\n", "ip2asn.tsv:2: not an AS number"),
        ("192.0.2.0\t2001:db8::1\t5\tJP\tX\n", "ip2asn.tsv:2: a range mixing IPv4 and IPv6"),
        ("this is not a range\n", "ip2asn.tsv:2: expected range_start"),
    ],
)
def test_a_bad_tsv_line_is_named_by_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "ip2asn.tsv"
    p.write_text("1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n" + text)
    with pytest.raises(GeoError, match=message):
        Ip2Asn(p)  # read whole at first use (config load checks the first line only)


def test_non_utf8_bytes_are_named_by_line(tmp_path: Path) -> None:
    p = tmp_path / "ip2asn.tsv"
    p.write_bytes(b"1.0.0.0\t1.0.0.255\t13335\tUS\tX\n" * 2 + b"1.0.1.0\t1.0.1.9\t5\tUS\t\xff\n")
    with pytest.raises(GeoError, match=r"ip2asn\.tsv:3: not UTF-8 text"):
        Ip2Asn(p)


def test_parse_asn() -> None:
    assert parse_asn("AS15169") == parse_asn("as15169") == parse_asn("15169") == 15169
    for bad in ("AS", "ASx", "0", "4294967296", "-1"):
        with pytest.raises(ValueError, match="not an AS number"):
            parse_asn(bad)


def _config(tmp_path: Path, geo: str) -> Path:
    p = tmp_path / "m.toml"
    p.write_text(
        f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp_path}/m.db"\n'
        f"# enrichment\n[geo]\n{geo}\n"
    )
    return p


def test_geo_config_loads_and_is_off_without_a_geo_table(tmp_path: Path) -> None:
    write_tsv(tmp_path / "ip2asn.tsv")
    write_asn_mmdb(tmp_path / "asn.mmdb")
    cfg = cfgmod.load(_config(tmp_path, 'mmdb = "asn.mmdb"\nip2asn = ["ip2asn.tsv"]'))
    assert cfg.geo.enabled and cfg.geo.builtin_country
    assert cfg.geo.mmdb == (tmp_path / "asn.mmdb",) and cfg.geo.ip2asn == (tmp_path / "ip2asn.tsv",)
    assert cfgmod.load(_config(tmp_path, "")).geo.enabled  # an empty [geo]: builtin countries
    assert not cfgmod.load(_config(tmp_path, "enabled = false")).geo.enabled
    plain = tmp_path / "plain.toml"
    plain.write_text(f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp_path}/m.db"\n')
    assert not cfgmod.load(plain).geo.enabled


@pytest.mark.parametrize(
    ("setting", "where", "message"),
    [
        ('mmdb = ["missing.mmdb"]', ":7: geo.mmdb", "missing.mmdb: not a readable MaxMind DB"),
        ('mmdb = "bad.mmdb"', ":7: geo.mmdb", "bad.mmdb: not a readable MaxMind DB file"),
        ('mmdb = []\nip2asn = "missing.tsv"', ":8: geo.ip2asn", "missing.tsv: cannot read"),
        ('ip2asn = "bad.mmdb"', ":7: geo.ip2asn", "bad.mmdb: not an iptoasn TSV"),
        ("mmdb = 5", ":7: geo.mmdb", "must be a file path or a list"),
        ('ip2asn = "x.tsv"\ncountry = "JP"', ":8: geo.country", "unknown key"),
    ],
)
def test_a_geo_database_that_cannot_be_read_is_a_config_error_naming_line_and_key(
    tmp_path: Path, setting: str, where: str, message: str
) -> None:
    (tmp_path / "bad.mmdb").write_text("this is not a database\n")
    (tmp_path / "x.tsv").write_text("1.0.0.0\t1.0.0.255\t13335\tUS\tX\n")
    with pytest.raises(ConfigError) as e:
        cfgmod.load(_config(tmp_path, setting))
    text = str(e.value)
    assert text.startswith(f"{tmp_path / 'm.toml'}{where}") and message in text, text


def test_holder_runs_without_enrichment_when_a_database_breaks_at_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tsv = write_tsv(tmp_path / "ip2asn.tsv")
    holder = GeoHolder()
    geo = holder.get([], [tsv], False, True)
    assert geo is not None and geo.lookup("192.0.2.1") == GeoInfo(64500, "EXAMPLE-HOSTING", "JP")
    assert holder.get([], [tsv], False, True) is geo  # same [geo]: same databases
    broken = tmp_path / "broken.tsv"
    broken.write_text("192.0.2.0\tnot-an-address\t1\tJP\tX\n")
    assert holder.get([], [broken], False, True) is None
    assert "broken.tsv:1: not an address range" in caplog.text
    assert holder.get([], [tsv], False, False) is None  # [geo] removed


def test_a_damaged_data_section_is_logged_once_and_left_out_the_tsv_still_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import maxminddb

    good = write_asn_mmdb(tmp_path / "asn.mmdb")
    with maxminddb.open_database(str(good)) as r:
        m = r.metadata()
        tree = m.node_count * m.record_size * 2 // 8
    data = bytearray(good.read_bytes())
    data[tree + 16 : tree + 56] = b"\xff" * 40  # the data section, past the 16-byte separator
    bad = tmp_path / "damaged.mmdb"
    bad.write_bytes(bytes(data))
    geo = open_geo([bad], [write_tsv(tmp_path / "ip2asn.tsv")], builtin_country=False)
    assert geo.lookup("192.0.2.1") == GeoInfo(64500, "EXAMPLE-HOSTING", "JP")  # from the TSV
    assert geo.lookup("203.0.113.9") == GeoInfo(64502, "BULLETPROOF-LTD", "RU")
    assert caplog.text.count("damaged database") == 1 and "damaged.mmdb" in caplog.text
    geo.close()


def test_holder_reopens_a_replaced_file_and_keeps_builtin_countries_when_it_breaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os

    tsv = write_tsv(tmp_path / "ip2asn.tsv")
    holder = GeoHolder()
    geo = holder.get([], [tsv], True, True)
    assert geo is not None and geo.lookup("192.0.2.1") == GeoInfo(64500, "EXAMPLE-HOSTING", "JP")
    new = tmp_path / "new.tsv"  # replaced in place (rename over), same config
    new.write_text("192.0.2.0\t192.0.2.255\t64999\tUS\tNEW-OWNER\n")
    os.replace(new, tsv)
    geo = holder.get([], [tsv], True, True)
    assert geo is not None and geo.lookup("192.0.2.1") == GeoInfo(64999, "NEW-OWNER", "US")
    assert not holder.broken
    tsv.write_text("192.0.2.0\tnot-an-address\t1\tJP\tX\n")  # damaged
    geo = holder.get([], [tsv], True, True)
    assert holder.broken and geo is not None and not geo.tsvs
    assert geo.lookup("1.1.1.1") == GeoInfo(None, "", "AU")  # the bundled RIR data still
    assert holder.get([], [tsv], True, True) is geo
    assert caplog.text.count("not an address range") == 1
