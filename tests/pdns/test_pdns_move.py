"""`mamori pdns export` / `import`: a store moved through NDJSON files comes out exactly
the same; bad lines are named by number and nothing is half-imported from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mamori.cli import cli
from mamori.store.pdns_base import NxRecord, Record
from mamori.store.pdns_sqlite import PdnsSQLite

T = 1_700_000_000
TUPLES = {
    ("www.example.com.", 1, "192.0.2.1", ""): [T, T + 50, 3],
    ("www.example.com.", 28, "2001:DB8::2", ""): [T + 5, T + 40, 2],
    ("example.com.", 2, "ns1.dns.example.net.", "com."): [T - 9, T + 90, 9],
    ("example.com.", 15, "10 mx.example.com.", ""): [T, T + 80, 4],
    ("xn--bcher-kva.example.", 16, '"bücher \\"quoted\\""', ""): [T, T, 1],
    ("big.example.", 1, "198.51.100.7", ""): [0, 2**32 - 1, 2**40],  # the limits' edges
}


def _conf(tmp_path: Path, name: str) -> Path:
    c = tmp_path / f"{name}.toml"
    c.write_text(
        f'[store]\npath = "{tmp_path}/{name}.db"\n[pdns]\npath = "{tmp_path}/{name}-pdns.db"\n'
    )
    return c


def _records(tmp_path: Path, name: str) -> list[Record]:
    path = tmp_path / f"{name}-pdns.db"
    if not path.exists():
        return []
    store = PdnsSQLite(path, readonly=True)
    try:
        return list(store.export_records())
    finally:
        store.close()


def _run(*args: str, code: int = 0, stdin: str | None = None) -> str:
    r = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r.output


NX = {("nope.example.com.", 1): [T, T + 7, 5], ("nope.example.com.", 255): [T + 1, T + 1, 1],
      ("parked-mizuho.example.", 28): [T - 3, T + 9, 2]}  # fmt: skip


@pytest.fixture
def source(tmp_path: Path) -> Path:
    conf = _conf(tmp_path, "src")
    store = PdnsSQLite(tmp_path / "src-pdns.db")
    store.write(TUPLES, nx=NX)
    store.close()
    return conf


def _nx(tmp_path: Path, name: str) -> list[NxRecord]:
    store = PdnsSQLite(tmp_path / f"{name}-pdns.db", readonly=True)
    try:
        return list(store.export_nxdomain())
    finally:
        store.close()


@pytest.mark.parametrize("fmt", ["dnsdb", "cof"])
def test_export_import_round_trip_is_exact(tmp_path: Path, source: Path, fmt: str) -> None:
    dump = tmp_path / f"dump.{fmt}.json"
    _run("pdns", "export", "--config", str(source), "--format", fmt, "-o", str(dump))
    lines = [json.loads(x) for x in dump.read_text().splitlines()]
    assert len(lines) == len(TUPLES) + len(NX)
    assert lines[-3:] == [  # after the tuples, the same in both formats
        {"rrname": "nope.example.com.", "rrtype": "A", "rcode": "NXDOMAIN",
         "time_first": T, "time_last": T + 7, "count": 5},
        {"rrname": "nope.example.com.", "rrtype": "ANY", "rcode": "NXDOMAIN",
         "time_first": T + 1, "time_last": T + 1, "count": 1},
        {"rrname": "parked-mizuho.example.", "rrtype": "AAAA", "rcode": "NXDOMAIN",
         "time_first": T - 3, "time_last": T + 9, "count": 2},
    ]  # fmt: skip
    (rdata,) = [x["rdata"] for x in lines if x["rrtype"] == "AAAA" and "rcode" not in x]
    assert rdata == (["2001:DB8::2"] if fmt == "dnsdb" else "2001:DB8::2")
    out = _run(
        "pdns", "import", "--config", str(_conf(tmp_path, "dst")), "--format", fmt, str(dump)
    )
    assert f"imported {len(TUPLES)} records and {len(NX)} NXDOMAIN rows" in out
    assert _records(tmp_path, "dst") == _records(tmp_path, "src")
    assert _nx(tmp_path, "dst") == _nx(tmp_path, "src") and len(_nx(tmp_path, "src")) == 3
    # again: the counts add up, first and last stay
    _run("pdns", "import", "--config", str(_conf(tmp_path, "dst")), "--format", fmt, str(dump))
    again = _records(tmp_path, "dst")
    assert [(r.time_first, r.time_last, r.count) for r in again] == [
        (r.time_first, r.time_last, 2 * r.count) for r in _records(tmp_path, "src")
    ]
    assert [(r.time_first, r.time_last, r.count) for r in _nx(tmp_path, "dst")] == [
        (r.time_first, r.time_last, 2 * r.count) for r in _nx(tmp_path, "src")
    ]


def test_export_without_nxdomain_rows(tmp_path: Path, source: Path) -> None:
    dump = tmp_path / "dump.json"
    r = CliRunner().invoke(
        cli, ["pdns", "export", "--config", str(source), "--no-nxdomain", "-o", str(dump)]
    )
    assert r.exit_code == 0 and f"exported {len(TUPLES)} tuples (dnsdb)" in r.output
    assert "rcode" not in dump.read_text() and len(dump.read_text().splitlines()) == len(TUPLES)


def test_export_to_stdout_imports_from_stdin(tmp_path: Path, source: Path) -> None:
    out = CliRunner().invoke(cli, ["pdns", "export", "--config", str(source)]).stdout
    _run("pdns", "import", "--config", str(_conf(tmp_path, "dst")), "-", stdin=out)
    assert _records(tmp_path, "dst") == _records(tmp_path, "src")
    assert _nx(tmp_path, "dst") == _nx(tmp_path, "src")


def test_dnsdb_saf_framing_and_zone_times_are_read(tmp_path: Path) -> None:
    saf = tmp_path / "saf.json"
    obj = {
        "rrname": "Www.Example.COM",
        "rrtype": "A",
        "rdata": ["192.0.2.1", "192.0.2.2"],
        "zone_time_first": 10,
        "zone_time_last": 20,
        "count": 5,
        "bailiwick": "example.com",
    }
    saf.write_text(
        "\n".join(json.dumps(x) for x in [{"cond": "begin"}, {"obj": obj}, {"cond": "succeeded"}])
        + "\n"
    )
    _run("pdns", "import", "--config", str(_conf(tmp_path, "dst")), str(saf))
    assert _records(tmp_path, "dst") == [
        Record("www.example.com.", 1, "192.0.2.1", "example.com.", 10, 20, 5),
        Record("www.example.com.", 1, "192.0.2.2", "example.com.", 10, 20, 5),
    ]


GOOD = (
    '{"rrname":"a.example.","rrtype":"A","rdata":"192.0.2.1",'
    '"time_first":1,"time_last":2,"count":1}'
)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("{not json", "line 2: not JSON"),
        ('{"rrname":"b.example.","rrtype":"A","rdata":"x","time_first":3}', "line 2: missing"),
        (GOOD.replace('"count":1', '"count":-1'), "line 2: count -1 is not a whole number"),
        # limits both stores keep exactly (docs/howto/move-a-passive-dns-store.md)
        (GOOD.replace('"count":1', '"count":0'), "line 2: count 0 is not a whole number from 1"),
        (GOOD.replace('"count":1', f'"count":{2**64}'), f"count {2**64} is not a whole number"),
        (GOOD.replace('"count":1', f'"count":{2**53}'), "from 1 to 9007199254740991 (2**53 - 1)"),
        (
            GOOD.replace('"time_last":2', '"time_last":4294967296'),
            "line 2: time_last 4294967296 is not a time in UNIX seconds (0 to 4294967295)",
        ),
        (
            GOOD.replace('"time_last":2', '"time_last":1700000000123'),
            "(milliseconds? 1700000000 would be 2023-11-14 22:13:20 UTC)",
        ),
        (GOOD.replace('"time_first":1', '"time_first":-1'), "time_first -1 is not a time"),
        (GOOD.replace('"time_first":1', '"time_first":1.5'), "time_first 1.5 is not a time"),
        # names in ASCII presentation form: no space, no control character
        (GOOD.replace("a.example.", "a\\u0000b.example."), "rrname 'a\\x00b.example.'"),
        (GOOD.replace("a.example.", "a b.example."), "character ' ' (a space or a control"),
        (GOOD.replace("a.example.", "a\\tb.example."), "is not a DNS name: character '\\t'"),
        (
            GOOD.replace('"count"', '"bailiwick":"ex ample.","count"'),
            "bailiwick 'ex ample.' is not a DNS name: character ' '",
        ),
        (
            GOOD.replace('"A","rdata":"192.0.2.1"', '"CNAME","rdata":"b\\u0007.example."'),
            "line 2: CNAME rdata 'b\\x07.example.' is not a DNS name: character '\\x07'",
        ),
        (
            '{"rrname":"a\\u0000b.","rrtype":"A","rcode":"NXDOMAIN","time_first":1,'
            '"time_last":2,"count":1}',
            "rrname 'a\\x00b.' is not a DNS name",
        ),
        (GOOD.replace('"time_first":1', '"time_first":9'), "line 2: time_first 9 is after"),
        (GOOD.replace('"A"', '"NOPE"'), "line 2: unknown rrtype"),
        ("[1, 2]", "line 2: not a JSON object"),
        (GOOD.replace('"192.0.2.1"', '"x"'), "line 2: rdata 'x' is not an IPv4 address (A)"),
        (
            GOOD.replace('"A","rdata":"192.0.2.1"', '"AAAA","rdata":"192.0.2.1"'),
            "line 2: rdata '192.0.2.1' is not an IPv6 address (AAAA)",
        ),
        (
            GOOD.replace("a.example.", "e..example."),
            "line 2: rrname 'e..example.' is not a DNS name: an empty label",
        ),
        (GOOD.replace("a.example.", "a" * 64 + ".example."), "over 63 octets"),
        (GOOD.replace("a.example.", ("a" * 62 + ".") * 5), "longer than 255 octets"),
        (GOOD.replace("a.example.", "bücher.example."), "not ASCII"),
        (
            GOOD.replace('"A","rdata":"192.0.2.1"', '"CNAME","rdata":"b..example."'),
            "line 2: CNAME rdata 'b..example.' is not a DNS name",
        ),
        (
            GOOD.replace('"A","rdata":"192.0.2.1"', '"MX","rdata":"mx.example."'),
            "line 2: rdata 'mx.example.' is not MX rdata (PREFERENCE NAME)",
        ),
        (GOOD.replace('"A"', '"ANY"'), "line 2: rrtype 'ANY' is not a record type"),
        (GOOD.replace('"count"', '"bailiwick":"x..","count"'), "bailiwick 'x..' is not a DNS"),
        (GOOD.replace('"count"', '"rcode":"NXDOMAIN","count"'), "an NXDOMAIN row has no rdata"),
        (GOOD.replace('"count"', '"rcode":"SERVFAIL","count"'), "only NXDOMAIN rows are read"),
        (
            '{"rrname":"a..b.","rrtype":"A","rcode":"NXDOMAIN","time_first":1,"time_last":2,'
            '"count":1}',
            "rrname 'a..b.' is not a DNS name",
        ),
    ],
)
def test_a_bad_line_in_a_file_imports_nothing(tmp_path: Path, bad: str, why: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(f"{GOOD}\n{bad}\n{GOOD}\n")
    out = _run(
        "pdns", "import", "--config", str(_conf(tmp_path, "dst")), "--format", "cof", str(f), code=2
    )
    assert why in out and "nothing imported" in out
    assert _records(tmp_path, "dst") == []


def test_skip_bad_counts_and_names_the_lines(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_bytes(f"{GOOD}\nnope\n\n".encode() + b"\xff\xfe\n" + f"{GOOD}\n".encode())
    out = _run(
        "pdns",
        "import",
        "--config",
        str(_conf(tmp_path, "dst")),
        "--format",
        "cof",
        "--skip-bad",
        str(f),
    )
    assert "imported 2 records" in out and "skipped 2 bad lines (lines 2, 4)" in out
    assert [r.count for r in _records(tmp_path, "dst")] == [2]


def test_a_bad_line_on_stdin_keeps_what_came_before_and_says_so(tmp_path: Path) -> None:
    out = _run(
        "pdns",
        "import",
        "--config",
        str(_conf(tmp_path, "dst")),
        "--format",
        "cof",
        "--batch",
        "1",
        "-",
        stdin=f"{GOOD}\n{GOOD}\n{{\n{GOOD}\n",
        code=2,
    )
    assert "line 3: not JSON" in out and "the 2 records before it are imported" in out
    assert [r.count for r in _records(tmp_path, "dst")] == [2]


def test_sqlite_to_clickhouse_and_back_through_the_cli(
    tmp_path: Path, source: Path, request: pytest.FixtureRequest
) -> None:
    """[pdns] url: export and import go to ClickHouse, not to a local SQLite file."""
    import uuid

    server = request.getfixturevalue("clickhouse_server")
    url = server.url.rsplit("/", 1)[0] + f"/mv_{uuid.uuid4().hex[:10]}"
    ch = tmp_path / "ch.toml"
    ch.write_text(f'[store]\npath = "{tmp_path}/ch.db"\n[pdns]\nurl = "{url}"\n')
    dump, back = tmp_path / "dump.json", tmp_path / "back.json"
    _run("pdns", "export", "--config", str(source), "-o", str(dump))
    # the limits' edges too (time 2**32 - 1, count 2**40): both stores keep them exactly
    out = _run("pdns", "import", "--config", str(ch), str(dump))
    assert f"imported {len(TUPLES)} records and {len(NX)} NXDOMAIN rows" in out
    assert not (tmp_path / "pdns.sqlite").exists() and not list(tmp_path.glob("ch*pdns*"))
    _run("pdns", "export", "--config", str(ch), "-o", str(back))
    assert sorted(back.read_text().splitlines()) == sorted(dump.read_text().splitlines())


def test_query_shows_a_stored_time_no_date_can_show_as_its_number(tmp_path: Path) -> None:
    """A store written before the import limits may hold a millisecond time: the text
    output shows the number instead of failing on it."""
    conf = _conf(tmp_path, "q")
    store = PdnsSQLite(tmp_path / "q-pdns.db")
    store.write({("ms.example.", 1, "192.0.2.9", ""): [T, 1_700_000_000_123, 2]})
    store.close()
    out = _run("pdns", "query", "--config", str(conf), "-r", "ms.example.")
    assert ";; record times: 2023-11-14 22:13:20 .. 1700000000123" in out
    assert "ms.example.  A  192.0.2.9" in out


@pytest.mark.parametrize("backend", ["sqlite", "clickhouse"])
def test_the_largest_count_and_time_imported_twice_add_up_exactly(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """count 2**53 - 1 and time_last 2**32 - 1, the import's limits: the same line
    imported twice exports the exact sum on both stores (no 64-bit wrap, no overflow)."""
    conf = _conf(tmp_path, "dst")
    if backend == "clickhouse":
        url = request.getfixturevalue("clickhouse_url")
        conf.write_text(f'[store]\npath = "{tmp_path}/m.db"\n[pdns]\nurl = "{url}"\n')
    line = GOOD.replace('"count":1', f'"count":{2**53 - 1}')
    line = line.replace('"time_last":2', f'"time_last":{2**32 - 1}')
    f = tmp_path / "max.json"
    f.write_text(line + "\n" + line + "\n")
    for _ in range(2):
        assert "imported 2 records" in _run("pdns", "import", "--config", str(conf), str(f))
    out = _run("pdns", "export", "--config", str(conf))
    (got,) = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert (got["time_first"], got["time_last"], got["count"]) == (1, 2**32 - 1, 4 * (2**53 - 1))
