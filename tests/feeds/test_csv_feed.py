"""CSV feeds as RFC 4180 defines them and as URLhaus writes them.

The URLhaus database dumps (``https://urlhaus.abuse.ch/downloads/csv_recent/``)
open with a banner of ``#`` lines whose last one is the header
(``# id,dateadded,url,...``), then one quoted record per URL; ``tags`` holds
commas. The hosts below are from the URLhaus snapshot in
``../shared/data/feeds/urlhaus-filter`` (URLhaus data: CC0).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori import config
from mamori.cli import cli
from mamori.errors import ConfigError
from mamori.feeds.normalize import Entry
from mamori.feeds.parsers import FeedError, check_budget, parse

URLHAUS = Path(__file__).resolve().parents[3] / "shared/data/feeds/urlhaus-filter"

BANNER = """\
################################################################
# abuse.ch URLhaus Database Dump (CSV - recent URLs only)      #
# Last updated: 2025-07-19 12:05:04 (UTC)                      #
#                                                              #
# Terms Of Use: https://urlhaus.abuse.ch/api/                  #
# For questions please contact urlhaus [at] abuse.ch           #
################################################################
#
# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter
"""
COLUMNS = "id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter"


def _row(i: int, url: str, tags: str = "32-bit,elf,mips,Mozi") -> str:
    return (
        f'"{i}","2025-07-19 12:05:04","{url}","online","2025-07-19 12:05:04",'
        f'"malware_download","{tags}","https://urlhaus.abuse.ch/url/{i}/","geenensp"\r\n'
    )


ROWS = (
    _row(3579839, "http://0022a601.pphost.net/bins/mozi.m")
    + _row(3579838, "http://117.201.186.120:50277/i")
    + _row(3579837, "https://05webinvite.com/invite.exe", "exe,RemcosRAT")
)


def test_urlhaus_dump_header_in_the_last_comment_line() -> None:
    result = parse("csv", (BANNER + ROWS).splitlines(keepends=True))
    assert not result.rejected, result.rejected
    assert result.entries == [
        Entry("domain", "0022a601.pphost.net"),
        Entry("ip", "117.201.186.120"),
        Entry("domain", "05webinvite.com"),
    ]
    first = result.entries[0]
    assert (first.reason, first.reference) == (
        "malware_download",
        "https://urlhaus.abuse.ch/url/3579839/",
    )


def test_blank_lines_around_the_banner_change_nothing() -> None:
    text = "\n" + BANNER.replace("#\n", "\n") + "\n" + ROWS + "\n"
    result = parse("csv", text.splitlines(keepends=True))
    assert len(result.entries) == 3 and not result.rejected
    again = parse("csv", ["", COLUMNS, *ROWS.splitlines()], COLUMNS.split(","))
    assert len(again.entries) == 3 and not again.rejected


def test_urlhaus_dump_of_the_whole_snapshot_gives_its_names() -> None:
    """Every host of the real snapshot, written as the URLhaus dump writes it."""
    path = URLHAUS / "urlhaus-filter-domains.txt"
    if not path.exists():
        pytest.skip("shared data not present")
    hosts = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    text = BANNER + "".join(_row(i, f"http://{h}/x.sh") for i, h in enumerate(hosts, 1))
    result = parse("csv", text.splitlines(keepends=True))
    check_budget(result, "csv_recent")
    assert not result.rejected
    assert {e.value for e in result.entries} == {
        e.value for e in parse("domains", path.read_text().splitlines()).entries
    }
    assert result.lines == len(text.splitlines())


def test_quoted_fields_hold_commas_quotes_and_line_breaks() -> None:
    text = (
        "host,threat,reference\n"
        'a.example,"phishing, ""bank"" kit","line one\nline two"\n'
        '"b.example","multi\r\n# not a comment: inside quotes\r\nline",x\n'
        "# a comment between records\n"
        "c.example,,\n"
        "bad name.example,x,y\n"
    )
    result = parse("csv", text.splitlines(keepends=True))
    assert [(e.value, e.reason, e.reference) for e in result.entries] == [
        ("a.example", 'phishing, "bank" kit', "line one\nline two"),
        ("b.example", "multi\r\n# not a comment: inside quotes\r\nline", "x"),
        ("c.example", "", ""),
    ]
    assert [(no, why) for no, _t, why in result.rejected] == [(9, "bad label 'bad name'")]


def test_reason_and_reference_keep_their_spaces() -> None:
    """RFC 4180 section 2.4: spaces are part of a field."""
    result = parse("csv", ["host,reason,reference", "a.example, two words ,ref "])
    assert [(e.reason, e.reference) for e in result.entries] == [(" two words ", "ref ")]


def test_a_file_without_a_header_is_refused_naming_the_way_out() -> None:
    no_header = BANNER.rsplit("# id,", 1)[0]  # the banner without its last line
    with pytest.raises(FeedError, match=r"line 9: no header.*columns = \[\.\.\.\] in the"):
        parse("csv", (no_header + ROWS).splitlines())
    with pytest.raises(FeedError, match="line 1: no header"):
        parse("csv", ROWS.splitlines())


def test_configured_columns_name_a_file_without_a_header() -> None:
    names = COLUMNS.split(",")
    result = parse("csv", ROWS.splitlines(), names)
    assert [e.value for e in result.entries] == [
        "0022a601.pphost.net",
        "117.201.186.120",
        "05webinvite.com",
    ]
    assert result.entries[2].reason == "malware_download"
    again = parse("csv", [COLUMNS.upper(), *ROWS.splitlines()], names)  # a header after all
    assert again.entries == result.entries and not again.rejected


def _conf(tmp_path: Path, feed: str) -> Path:
    (tmp_path / "m.toml").write_text(
        f'[upstream]\nservers = ["127.0.0.1:53"]\n[store]\npath = "{tmp_path / "s" / "m.sqlite"}"\n'
        f'[[feed]]\nname = "urlhaus"\npath = "urlhaus.csv"\ncategory = "malware"\n{feed}'
    )
    return tmp_path / "m.toml"


@pytest.mark.parametrize(
    ("feed", "line", "message"),
    [
        ('format = "csv"\ncolumns = "url"\n', 10, "must be a list of column names"),
        ('format = "csv"\ncolumns = ["id", "threat"]\n', 10, "no column to take the value from"),
        ('format = "csv"\ncolumns = ["url", "URL"]\n', 10, "column 'url' is named twice"),
        ('format = "csv"\ncolumns = ["url", " "]\n', 10, "a column name is empty"),
        ('format = "hosts"\ncolumns = ["url"]\n', 10, 'only for format = "csv"'),
    ],
)
def test_columns_config_errors_name_file_line_and_key(
    tmp_path: Path, feed: str, line: int, message: str
) -> None:
    path = _conf(tmp_path, feed)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value).startswith(f"{path}:{line}: feed.columns: {message}")


def test_feed_update_of_a_urlhaus_dump_and_of_a_headerless_file(tmp_path: Path) -> None:
    (tmp_path / "urlhaus.csv").write_text(BANNER + ROWS)
    conf = _conf(tmp_path, 'format = "csv"\n')
    r = CliRunner().invoke(cli, ["feeds", "update", "--config", str(conf)])
    assert r.exit_code == 0, r.output
    assert "urlhaus: 3 entries, +3 -0, 0 allow rules, 0 rejected" in r.output
    r = CliRunner().invoke(cli, ["feeds", "lookup", "05webinvite.com", "--config", str(conf)])
    assert "reason: malware_download; reference: https://urlhaus.abuse.ch/url/3579837/" in r.output
    (tmp_path / "urlhaus.csv").write_text(ROWS)  # the same records, no banner
    r = CliRunner().invoke(cli, ["feeds", "update", "--config", str(conf)])
    assert r.exit_code == 1 and "no header" in r.output
    conf = _conf(tmp_path, f'format = "csv"\ncolumns = {COLUMNS.split(",")!r}\n'.replace("'", '"'))
    r = CliRunner().invoke(cli, ["feeds", "update", "--config", str(conf)])
    assert r.exit_code == 0 and "3 entries, +0 -0" in r.output, r.output


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        # a quoted field never closed: the rest of the file would vanish into it
        ('host,reason\nbq1.example,"unterminated\nbq2.example,ok\nbq3.example,ok\n', 2,
         "unexpected end of data"),
        # a field over csv's limit: was a traceback that stopped every later feed
        ("host,reason\nhc1.example," + "x" * 200_000 + "\nhc2.example,y\n", 2,
         "field larger than field limit"),
        ('host,reason\nq.example,"a"b\n', 2, "expected after"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_rfc_4180_csv_is_refused_naming_the_record(
    text: str, line: int, why: str
) -> None:
    with pytest.raises(FeedError) as e:
        parse("csv", text.splitlines(keepends=True))
    assert f"line {line}: not a CSV record (RFC 4180)" in str(e.value) and why in str(e.value)
