"""`mamori pdns query` with [geo]: AS and country of A/AAAA records, and --asn (the names
hosted on an AS), from an iptoasn TSV and MaxMind DB files written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori.cli import cli
from mamori.store.pdns_sqlite import PdnsSQLite
from tests.support.geodb import write_asn_mmdb, write_country_mmdb, write_tsv

RECORDS = {
    ("shop.example.", 1, "192.0.2.10", ""): [1000, 5000, 3],
    ("mail.example.", 1, "192.0.2.200", ""): [1000, 4000, 2],  # AS64501, DE
    ("v6.example.", 28, "2001:db8::10", ""): [1000, 3000, 1],
    ("cdn.example.", 1, "198.51.100.7", ""): [1000, 2000, 1],
    ("bad.example.", 1, "203.0.113.66", ""): [1000, 6000, 9],  # AS64502, RU
    ("alias.example.", 5, "shop.example.", ""): [1000, 1500, 1],
}


def _conf(tmp: Path, geo: str) -> Path:
    c = tmp / "m.toml"
    c.write_text(f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp}/m.db"\n{geo}')
    store = PdnsSQLite(tmp / "pdns.sqlite")
    store.write(RECORDS)  # type: ignore[arg-type]
    store.close()
    return c


@pytest.fixture(params=["tsv", "mmdb"])
def conf(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "tsv":
        write_tsv(tmp_path / "ip2asn.tsv")
        return _conf(tmp_path, '[geo]\nip2asn = "ip2asn.tsv"\n')
    write_asn_mmdb(tmp_path / "asn.mmdb")
    write_country_mmdb(tmp_path / "country.mmdb")
    return _conf(tmp_path, '[geo]\nmmdb = ["asn.mmdb", "country.mmdb"]\n')


def _run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r.stdout if code == 0 else r.output


def test_json_records_carry_asn_as_name_and_country(conf: Path) -> None:
    out = _run("pdns", "query", "--config", str(conf), "-r", "*.example", "-j")
    docs = {d["rrname"]: d for d in map(json.loads, out.splitlines())}
    assert {k: docs["bad.example."][k] for k in ("asn", "as_name", "country")} == {
        "asn": 64502, "as_name": "BULLETPROOF-LTD", "country": "RU",
    }  # fmt: skip
    assert (docs["mail.example."]["asn"], docs["mail.example."]["country"]) == (64501, "DE")
    assert (docs["v6.example."]["asn"], docs["v6.example."]["country"]) == (64500, "JP")
    assert "asn" not in docs["alias.example."] and "country" not in docs["alias.example."]


def test_text_and_csv_show_the_as_and_country(conf: Path) -> None:
    out = _run("pdns", "query", "--config", str(conf), "-r", "shop.example")
    assert "shop.example.  A  192.0.2.10  ; AS64500 EXAMPLE-HOSTING, JP" in out
    rows = _run("pdns", "query", "--config", str(conf), "-i", "203.0.113.0/24", "--csv")
    head, row = rows.splitlines()
    assert head.endswith(",rdata,asn,as_name,country")
    assert row.endswith(",bad.example.,A,203.0.113.66,64502,BULLETPROOF-LTD,RU")


def test_asn_pivot_lists_every_name_hosted_on_the_as(conf: Path) -> None:
    out = _run("pdns", "query", "--config", str(conf), "--asn", "AS64500", "-j")
    names = [json.loads(x)["rrname"] for x in out.splitlines()]
    assert names == ["shop.example.", "v6.example.", "cdn.example."]  # time_last descending
    out = _run("pdns", "query", "--config", str(conf), "--asn", "64500", "-l", "1", "-O", "1",
               "-j")  # fmt: skip
    assert [json.loads(x)["rrname"] for x in out.splitlines()] == ["v6.example."]
    out = _run("pdns", "query", "--config", str(conf), "--asn", "64500", "-t", "AAAA", "-j")
    assert [json.loads(x)["rrname"] for x in out.splitlines()] == ["v6.example."]
    r = _run("pdns", "query", "--config", str(conf), "--asn", "65000", code=1)
    assert "no results" in r
    r = _run("pdns", "query", "--config", str(conf), "--asn", "ASX", code=2)
    assert "not an AS number" in r


def test_without_geo_the_output_stays_standard_and_asn_is_refused(tmp_path: Path) -> None:
    conf = _conf(tmp_path, "")
    out = _run("pdns", "query", "--config", str(conf), "-r", "bad.example", "-j")
    assert set(json.loads(out)) == {"count", "time_first", "time_last", "rrtype", "rrname", "rdata"}
    r = _run("pdns", "query", "--config", str(conf), "--asn", "64500", code=2)
    assert "--asn needs AS databases" in r
    # [geo] with the bundled RIR countries only: countries, but no AS to pivot on
    conf.write_text(conf.read_text() + "[geo]\n")
    r = _run("pdns", "query", "--config", str(conf), "--asn", "64500", code=2)
    assert "--asn needs AS databases" in r


def test_overlapping_ranges_put_a_record_under_one_as_and_csv_cells_are_not_formulas(
    tmp_path: Path,
) -> None:
    # 192.0.2.0/24 is AS64501; a later line of the same range says AS64502: it wins
    # ("=HYPERLINK(...)": an AS name a spreadsheet would run as a formula)
    (tmp_path / "ip2asn.tsv").write_text(
        "192.0.2.0\t192.0.2.255\t64501\tDE\tOTHER-NET\n"
        '192.0.2.0\t192.0.2.255\t64502\tRU\t=HYPERLINK("http://x")\n'
    )
    conf = _conf(tmp_path, '[geo]\nip2asn = "ip2asn.tsv"\n')
    out = _run("pdns", "query", "--config", str(conf), "--asn", "AS64502", "-j")
    assert [json.loads(x)["rrname"] for x in out.splitlines()] == ["shop.example.", "mail.example."]
    r = _run("pdns", "query", "--config", str(conf), "--asn", "AS64501", code=1)
    assert "no results" in r  # not the same records a second time under the other AS
    rows = _run("pdns", "query", "--config", str(conf), "-r", "shop.example", "--csv")
    assert rows.splitlines()[1].endswith(',64502,"\'=HYPERLINK(""http://x"")",RU')
