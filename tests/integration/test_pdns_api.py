"""The passive DNS APIs from their real clients: pypdns (CIRCL COF) and dnsdb2 (DNSDB v2, SAF)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import dnsdb2
import jsonschema
import pypdns
import pytest

from mamori.config.load import load
from mamori.store.pdns_open import open_pdns
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

PCAP = Path(__file__).resolve().parents[3] / "shared/data/pcap"
SCHEMA = json.loads((PCAP / "pdns-qof__schema.json").read_text())


def _mamori(*args: str, conf: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "mamori", *args, "--config", str(conf)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture(scope="module", params=["sqlite", "clickhouse"])
def api(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[str, str, str, Path]]:
    """``mamori serve`` with its passive DNS in SQLite, or in Debian's ClickHouse server."""
    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    extra = f'[web]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
    if request.param == "clickhouse":
        server = request.getfixturevalue("clickhouse_server")
        extra += f'[pdns]\nurl = "{server.url.rsplit("/", 1)[0]}/api_{uuid.uuid4().hex[:8]}"\n'
    with AuthServer(ZONE, "example.test.") as up:
        m = MamoriProcess(tmp, [f"127.0.0.1:{up.port}"], extra=extra)
        _mamori("pdns", "ingest", *map(str, sorted(PCAP.glob("*.pcap"))), conf=m.config)
        store = open_pdns(load(m.config, resolver=False))
        # 120 names on one address: more than a page of pypdns (50) and a DNSDB limit
        shared = "203.0.113.80"
        store.write({(f"h{i:03d}.shared-host.example.", 1, shared, ""): [1000 + i, 2000 + i, 1]
                     for i in range(120)})  # fmt: skip
        store.close()
        key = _mamori("keys", "add", "analyst", conf=m.config)
        small = _mamori("keys", "add", "trial", "--quota", "3", conf=m.config)
        m.start()
        url = f"http://127.0.0.1:{port}"
        try:
            assert until(lambda: _ping(url), 15), m.stderr()
            yield url, key, small, m.config
        finally:
            assert m.stop() == 0, m.stderr()


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/dnsdb/v2/ping", timeout=1) as r:
            return bool(json.loads(r.read())["ping"] == "ok")
    except OSError:
        return False


def test_pypdns_paginates_an_ip_and_records_validate_against_the_cof_schema(
    api: tuple[str, str, str, Path],
) -> None:
    url, key, _small, _conf = api
    client = pypdns.PyPDNS(url=f"{url}/pdns/query", basic_auth=("analyst", key))
    records = list(client.iter_query("203.0.113.80"))
    assert len(records) == 120
    assert {r.rrname for r in records} == {f"h{i:03d}.shared-host.example." for i in range(120)}
    for r in records:
        jsonschema.validate(r.raw, SCHEMA)


def test_pypdns_name_query_auth_forms_and_filter(api: tuple[str, str, str, Path]) -> None:
    url, key, _small, _conf = api
    for kwargs in ({"auth_token": key}, {"auth_header": ("X-API-Key", key)},
                   {"basic_auth": ("analyst", key)}):  # fmt: skip
        client = pypdns.PyPDNS(url=f"{url}/pdns/query", **kwargs)  # type: ignore[arg-type]
        (rec,) = client.rfc_query("www.fark.com.")
        assert (rec.rrname, rec.rrtype, rec.rdata) == (
            "www.fark.com.", "A", ["64.191.171.200"],
        )  # fmt: skip
        assert rec.count == 117  # 50 UDP + 300 TCP responses across the captures, fark's share
    client = pypdns.PyPDNS(url=f"{url}/pdns/query", auth_token=key)
    mx = client.rfc_query("google.com.", filter_rrtype="MX")
    assert {r.rdata[0] for r in mx} >= {"10 aspmx.l.google.com."} and all(
        r.rrtype == "MX" for r in mx
    )
    # the name as rdata too: which names point at aspmx
    assert {r.rrname for r in client.rfc_query("aspmx.l.google.com.")} == {"google.com."}
    with pytest.raises(pypdns.UnauthorizedError):
        pypdns.PyPDNS(url=f"{url}/pdns/query", auth_token="mk_wrong").rfc_query("google.com.")


def test_dnsdb2_lookups_summaries_flex_and_limits(api: tuple[str, str, str, Path]) -> None:
    url, key, _small, _conf = api
    c = dnsdb2.Client(key, server=url)
    assert c.ping()
    assert c.rate_limit()["rate"]["limit"] == "unlimited"
    (rrset,) = list(c.lookup_rrset("google.com", rrtype="NS"))
    assert rrset["rdata"] == ["ns1.google.com.", "ns2.google.com.", "ns3.google.com.",
                              "ns4.google.com."]  # fmt: skip
    assert {r["rrname"] for r in c.lookup_rrset("*.google.com")} == {"www.google.com."}
    ips = list(c.lookup_rdata_ip("216.34.181.0/24"))
    assert [(r["rrname"], r["rdata"]) for r in ips] == [("www.slashdot.org.", "216.34.181.48")]
    assert [r["rrname"] for r in c.lookup_rdata_name("aspmx.l.google.com", rrtype="MX")] == [
        "google.com."
    ]
    (summary,) = list(c.summarize_rdata_ip("203.0.113.80"))
    assert summary["num_results"] == 120 and summary["count"] == 120
    assert summary["time_first"] == 1000 and summary["time_last"] == 2119
    fenced = list(c.lookup_rdata_ip("203.0.113.80", time_last_after=2100))
    assert len(fenced) == 20  # last seen 2100 ... 2119: the fence is "on or after"
    with pytest.raises(dnsdb2.QueryLimited):
        list(c.lookup_rdata_ip("203.0.113.80", limit=10))
    assert len(list(c.lookup_rdata_ip("203.0.113.80", limit=10, ignore_limited=True))) == 10
    assert {r["rrname"] for r in c.flex_rrnames_regex(r"^www\.(fark|slashdot)\.")} == {
        "www.fark.com.", "www.slashdot.org.",
    }  # fmt: skip
    assert [r["rrname"] for r in c.flex_rrnames_glob("*.slashdot.org.")] == ["www.slashdot.org."]
    with pytest.raises(dnsdb2.AccessDenied):
        list(dnsdb2.Client("mk_nope", server=url).lookup_rrset("google.com"))


def test_quota_and_bad_patterns(api: tuple[str, str, str, Path]) -> None:
    url, key, small, _conf = api
    c = dnsdb2.Client(small, server=url)
    for _ in range(3):
        list(c.lookup_rrset("www.fark.com"))
    with pytest.raises(dnsdb2.QuotaExceeded):
        list(c.lookup_rrset("www.fark.com"))
    bad = urllib.request.Request(f"{url}/dnsdb/v2/regex/rrnames/(a", headers={"X-API-Key": key})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad, timeout=3)
    assert e.value.code == 400 and b"bad regular expression" in e.value.read()
    e.value.close()
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=3) as r:
        spec = json.loads(r.read())
    assert "/pdns/query/{q}" in spec["paths"]


def test_cli_queries_a_remote_mamori(api: tuple[str, str, str, Path]) -> None:
    url, key, _small, _conf = api
    r = subprocess.run(
        [sys.executable, "-m", "mamori", "pdns", "query", "--server", url, "--key", key,
         "-i", "203.0.113.80", "-A", "1500", "-j"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    names = [json.loads(x)["rrname"] for x in r.stdout.splitlines()]
    assert len(names) == 120 and "h000.shared-host.example." in names
    text = subprocess.run(
        [sys.executable, "-m", "mamori", "pdns", "query", "--server", url, "--key", key,
         "-r", "google.com/MX"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "google.com.  MX  10 aspmx.l.google.com." in text
    bad = subprocess.run(
        [sys.executable, "-m", "mamori", "pdns", "query", "--server", url, "--key", "x",
         "-r", "google.com"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "HTTP 401" in bad.stderr


# The shared address's tuples: h000 first/last seen 1000/2000 ... h119 1119/2119.
FENCES = [
    ("time_last_after", 2119, ["h119"]),  # "on or after": last seen exactly then
    ("time_last_before", 2000, ["h000"]),  # "on or before"
    ("time_first_after", 1119, ["h119"]),
    ("time_first_before", 1000, ["h000"]),
]


@pytest.fixture(scope="module")
def fence_key(api: tuple[str, str, str, Path]) -> str:
    """A key whose rate limit the many boundary queries stay under."""
    return _mamori("keys", "add", "fences", "--rate", "1000", "--burst", "1000", conf=api[3])


@pytest.mark.parametrize(("fence", "at", "names"), FENCES)
def test_dnsdb_time_fences_include_their_exact_boundary(
    api: tuple[str, str, str, Path], fence_key: str, fence: str, at: int, names: list[str]
) -> None:
    url, key = api[0], fence_key
    c = dnsdb2.Client(key, server=url)
    got = [r["rrname"].split(".")[0] for r in c.lookup_rdata_ip("203.0.113.80", **{fence: at})]
    assert got == names
    step = 1 if fence.endswith("_after") else -1  # one second past the boundary: nothing
    assert list(c.lookup_rdata_ip("203.0.113.80", **{fence: at + step})) == []
    (summary,) = list(c.summarize_rdata_ip("203.0.113.80", **{fence: at}))
    assert summary["num_results"] == 1


@pytest.mark.parametrize(("fence", "at", "names"), FENCES)
def test_cof_time_fences_include_their_exact_boundary(
    api: tuple[str, str, str, Path], fence_key: str, fence: str, at: int, names: list[str]
) -> None:
    url, key = api[0], fence_key

    def ask(value: int) -> list[str]:
        req = urllib.request.Request(
            f"{url}/pdns/query/203.0.113.80?{fence}={value}", headers={"X-API-Key": key}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return [json.loads(x)["rrname"].split(".")[0] for x in r.read().splitlines()]

    assert ask(at) == names
    assert ask(at + (1 if fence.endswith("_after") else -1)) == []


def _console(url: str, conf: Path) -> urllib.request.OpenerDirector:
    """An HTTP client logged in to the console as the first admin."""
    import http.cookiejar
    import re

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{url}/login", timeout=5) as r:
        m = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
    assert m is not None
    password = (conf.parent / "initial-admin-password").read_text().strip()
    form = urllib.parse.urlencode(
        {"csrf": m.group(1), "next": "/", "user": "admin", "password": password}
    ).encode()
    with opener.open(f"{url}/login", data=form, timeout=5) as r:
        assert "/login" not in r.url
    return opener


@pytest.mark.parametrize(
    ("field", "at", "names"),
    [("after", 2119, ["h119"]), ("before", 1000, ["h000"])],  # seen on or after / on or before
)
def test_console_time_fences_include_their_exact_boundary(
    api: tuple[str, str, str, Path], field: str, at: int, names: list[str]
) -> None:
    import re

    url, _key, _small, conf = api
    opener = _console(url, conf)

    def ask(value: int) -> list[str]:
        with opener.open(f"{url}/pdns?q=203.0.113.80&{field}={value}", timeout=5) as r:
            html = r.read().decode()
        return re.findall(r"<td>(h\d{3})\.shared-host\.example\.</td>", html)

    assert ask(at) == names
    assert ask(at + (1 if field == "after" else -1)) == []
