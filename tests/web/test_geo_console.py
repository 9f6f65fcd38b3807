"""AS and country in the console (passive DNS page, query log, Countries page) and the
passive DNS API (COF ?geo=true, GET /pdns/asn/{asn}), from databases the test writes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from mamori import config as cfgmod
from mamori.store.pdns_sqlite import PdnsSQLite
from mamori.store.sqlite import SQLiteStore
from mamori.web.app import keys_path
from mamori.web.keys import KeyStore
from tests.support.console import Client, ConsoleServer, write_config
from tests.support.geodb import write_asn_mmdb, write_country_mmdb

NOW = time.time()
DAY = 86400


def _row(ts: float, qname: str, answer: str, blocked: bool) -> tuple[object, ...]:
    zone, rule, action, outcome = ("", "", "", "resolved")
    if blocked:
        zone, rule, action, outcome = ("bl.rpz.", f"{qname}bl.rpz.", "NXDOMAIN", "blocked")
    return (ts, "192.0.2.99", qname, 1, 3 if blocked else 0, answer, 10, "", False, "udp",
            zone, rule, "QNAME" if blocked else "", action, outcome, action, "", "")  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    tmp = tmp_path_factory.mktemp("geo")
    write_asn_mmdb(tmp / "asn.mmdb")
    write_country_mmdb(tmp / "country.mmdb")
    cfg = write_config(
        tmp, f'[geo]\nmmdb = ["{tmp}/asn.mmdb", "{tmp}/country.mmdb"]\nbuiltin_country = false\n'
    )
    pdns = PdnsSQLite(cfgmod.pdns_path(cfg))
    t = int(NOW)
    pdns.write({
        ("shop.example.", 1, "192.0.2.10", ""): [t - 9 * DAY, t - 100, 3],
        ("v6.example.", 28, "2001:db8::10", ""): [t - 9 * DAY, t - 200, 1],
        ("cdn.example.", 1, "198.51.100.7", ""): [t - 9 * DAY, t - 300, 1],
        ("bad.example.", 1, "203.0.113.66", ""): [t - 9 * DAY, t - 50, 9],
        ("mail.example.", 1, "192.0.2.200", ""): [t - 9 * DAY, t - 60, 2],
    })  # fmt: skip
    pdns.close()
    store = SQLiteStore(cfg.store.path)
    store.write_queries([
        _row(NOW - 30, "shop.example.", "A 192.0.2.10;AAAA 2001:db8::10", False),  # type: ignore[list-item]
        _row(NOW - 20, "bad.example.", "", True),  # type: ignore[list-item]
        _row(NOW - 19, "bad.example.", "", True),  # type: ignore[list-item]
        _row(NOW - 2 * DAY, "bad.example.", "", True),  # type: ignore[list-item]
        _row(NOW - 10, "mail.example.", "", True),  # type: ignore[list-item]
        _row(NOW - 5, "never-resolved.example.", "", True),  # type: ignore[list-item]
    ])  # fmt: skip
    store.close()
    keys = KeyStore(keys_path(cfg))
    key = keys.add("analyst")
    reader = keys.add("reader", scope="read")
    keys.close()
    with ConsoleServer(cfg) as srv:
        yield srv.base, key, reader


def test_pdns_page_shows_as_and_country_and_pivots_on_an_as(served: tuple[str, str, str]) -> None:
    base, _key, _reader = served
    c = Client(base)
    c.login()
    status, page = c.get("/pdns?q=shop.example")
    assert status == 200
    assert '<a href="/pdns?q=AS64500"' in page and "AS64500</a> EXAMPLE-HOSTING" in page
    assert '<td class="country">JP</td>' in page
    status, page = c.get("/pdns?q=AS64500")
    assert status == 200
    names = re.findall(r"<tr><td>([a-z0-9.]+)</td><td>(?:A|AAAA)</td>", page)
    assert names == ["shop.example.", "v6.example.", "cdn.example."]
    assert "bad.example." not in page


def test_query_log_answers_carry_as_and_country(served: tuple[str, str, str]) -> None:
    base, _key, _reader = served
    c = Client(base)
    c.login()
    status, page = c.get("/queries?name=shop.example")
    assert status == 200
    assert '<span class="geo">192.0.2.10 AS64500 EXAMPLE-HOSTING, JP</span>' in page
    assert '<span class="geo">2001:db8::10 AS64500 EXAMPLE-HOSTING, JP</span>' in page
    status, doc = c.json("/queries.json?after=0&name=shop.example")
    assert status == 200 and doc["rows"][0]["geo"] == [
        "192.0.2.10 AS64500 EXAMPLE-HOSTING, JP", "2001:db8::10 AS64500 EXAMPLE-HOSTING, JP",
    ]  # fmt: skip


def test_countries_page_counts_blocks_by_the_blocked_names_countries(
    served: tuple[str, str, str],
) -> None:
    base, _key, _reader = served
    c = Client(base)
    c.login()
    status, page = c.get("/geo?days=7")
    assert status == 200
    rows = re.findall(r'<tr><td>([A-Z?]{2})</td><td class="n">(\d+)</td>', page)
    assert rows == [("RU", "3"), ("??", "1"), ("DE", "1")]
    chart = json.loads(re.search(r'id="countries-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert chart["bucket"] == DAY and sum(chart["series"]["RU"]) == 3
    assert len(chart["buckets"]) == len(chart["series"]["DE"])
    status, page = c.get("/geo?days=1")  # the older block of bad.example is out of the window
    assert re.findall(r'<tr><td>([A-Z?]{2})</td><td class="n">(\d+)</td>', page) == [
        ("RU", "2"), ("??", "1"), ("DE", "1"),
    ]  # fmt: skip
    c.request("/lang/ja?next=/geo", method="GET")
    status, page = c.get("/geo")
    assert "接続先の国別ブロック数" in page


def test_cof_is_standard_unless_asked_and_the_asn_pivot_paginates(
    served: tuple[str, str, str],
) -> None:
    base, key, _reader = served
    c = Client(base)
    auth = {"X-API-Key": key}
    status, _h, body = c.request("/pdns/query/bad.example", headers=auth)
    assert status == 200
    assert set(json.loads(body)) == {"count", "time_first", "time_last", "rrtype", "rrname",
                                     "rdata"}  # fmt: skip
    status, _h, body = c.request("/pdns/query/bad.example?geo=true", headers=auth)
    doc = json.loads(body)
    assert (doc["asn"], doc["as_name"], doc["country"]) == (64502, "BULLETPROOF-LTD", "RU")
    status, headers, body = c.request(
        "/pdns/asn/AS64500", headers={**auth, "dribble-paginate-count": "2"}
    )
    assert status == 200 and headers["x-dribble-cursor"] == "2"
    assert [json.loads(x)["rrname"] for x in body.decode().splitlines()] == [
        "shop.example.", "v6.example.",
    ]  # fmt: skip
    status, headers, body = c.request(
        "/pdns/asn/64500", headers={**auth, "dribble-paginate-cursor": "2"}
    )
    (last,) = [json.loads(x) for x in body.decode().splitlines()]
    assert last["rrname"] == "cdn.example." and last["country"] == "JP"
    assert "x-dribble-cursor" not in headers
    status, _h, _b = c.request("/pdns/asn/64500")
    assert status == 401
    status, _h, body = c.request("/pdns/asn/ASX", headers=auth)
    assert status == 400 and b"not an AS number" in body


def test_stats_api_gives_blocks_by_country(served: tuple[str, str, str]) -> None:
    base, pdns_key, reader = served
    c = Client(base)
    status, _h, body = c.request("/api/v1/stats/countries?days=7", headers={"X-API-Key": reader})
    assert status == 200
    doc = json.loads(body)
    assert [(x["country"], x["blocked"]) for x in doc["countries"]] == [
        ("RU", 3), ("??", 1), ("DE", 1),
    ]  # fmt: skip
    assert doc["countries"][0]["top_names"] == ["bad.example."]
    assert doc["bucket"] == DAY and len(doc["buckets"]) == len(doc["series"]["RU"])
    status, _h, body = c.request("/api/v1/stats/countries?days=0", headers={"X-API-Key": reader})
    assert status == 400 and json.loads(body)["field"] == "days"
    status, _h, _b = c.request("/api/v1/stats/countries", headers={"X-API-Key": pdns_key})
    assert status == 403  # a passive DNS key does not read the REST API


def test_a_replaced_tsv_is_picked_up_and_a_damaged_one_answers_503(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import os

    tmp = tmp_path_factory.mktemp("geo-tsv")
    tsv = tmp / "ip2asn.tsv"
    tsv.write_text("192.0.2.0\t192.0.2.255\t64500\tJP\tEXAMPLE-HOSTING\n")
    cfg = write_config(tmp, f'[geo]\nip2asn = "{tsv}"\n')
    pdns = PdnsSQLite(cfgmod.pdns_path(cfg))
    pdns.write({("shop.example.", 1, "192.0.2.10", ""): [int(NOW) - DAY, int(NOW), 1]})
    pdns.close()
    keys = KeyStore(keys_path(cfg))
    auth = {"X-API-Key": keys.add("analyst")}
    keys.close()
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        status, _h, body = c.request("/pdns/asn/64500", headers=auth)
        assert status == 200 and b"shop.example." in body
        new = tmp / "new.tsv"  # the file replaced in place, no SIGHUP
        new.write_text("192.0.2.0\t192.0.2.255\t64999\tUS\tNEW-OWNER\n")
        os.replace(new, tsv)
        status, _h, body = c.request("/pdns/asn/64999", headers=auth)
        assert status == 200 and b"NEW-OWNER" in body
        tsv.write_text("192.0.2.0\tnot-an-address\t1\tJP\tX\n")  # damaged
        status, _h, body = c.request("/pdns/asn/64999", headers=auth)
        assert status == 503 and b"could not be read (see the log)" in body
