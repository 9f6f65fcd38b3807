"""The passive DNS APIs (COF, DNSDB) and the brand watch's scan when ClickHouse does not
answer: 503 and a clear message, never a 500; the server's address stays in the log."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mamori.web.app import keys_path
from mamori.web.keys import KeyStore
from tests.support.console import ConsoleServer, write_config
from tests.support.net import free_port


@pytest.mark.parametrize(
    "path",
    [
        "/pdns/query/www.example.com",
        "/pdns/query/192.0.2.1",
        "/dnsdb/v2/lookup/rrset/name/www.example.com",
        "/dnsdb/v2/summarize/rrset/name/www.example.com",
        "/dnsdb/v2/lookup/rdata/ip/192.0.2.1",
        "/dnsdb/v2/lookup/rdata/name/ns1.example.com",
        "/dnsdb/v2/glob/rrnames/*.example.com",
    ],
)
def test_lookups_answer_503_with_a_clear_message_when_clickhouse_is_away(
    tmp_path: Path, path: str
) -> None:
    cfg = write_config(tmp_path, f'[pdns]\nurl = "clickhouse://127.0.0.1:{free_port()}/db"\n')
    keys = KeyStore(keys_path(cfg))
    key = keys.add("reader", rate=1000, burst=1000, scope="read")
    keys.close()
    with ConsoleServer(cfg) as srv:
        req = urllib.request.Request(srv.base + path, headers={"X-API-Key": key})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 503
    assert e.value.headers["Retry-After"] == "30"
    body = e.value.read().decode()
    assert body == "the passive DNS store is unavailable (see the server log); try again later\n"


def test_a_brand_scan_answers_503_when_clickhouse_is_away(tmp_path: Path) -> None:
    import json

    cfg = write_config(
        tmp_path,
        f'[pdns]\nurl = "clickhouse://127.0.0.1:{free_port()}/db"\n'
        '[[brand]]\nname = "Mizuho"\ndomains = ["mizuho.co.jp"]\n',
    )
    keys = KeyStore(keys_path(cfg))
    key = keys.add("ops", rate=1000, burst=1000, scope="admin")
    keys.close()
    with ConsoleServer(cfg) as srv:
        req = urllib.request.Request(
            srv.base + "/api/v1/brand-matches/scan", data=b"", method="POST",
            headers={"X-API-Key": key},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 503 and e.value.headers["Retry-After"] == "30"
    assert json.loads(e.value.read()) == {
        "error": "passive DNS cannot be read now (see the server log); try again later"
    }


def test_the_brands_page_says_why_a_scan_failed_when_clickhouse_is_away(tmp_path: Path) -> None:
    import re

    from tests.support.console import Client

    cfg = write_config(
        tmp_path,
        f'[pdns]\nurl = "clickhouse://127.0.0.1:{free_port()}/db"\n'
        '[[brand]]\nname = "Mizuho"\ndomains = ["mizuho.co.jp"]\n',
    )
    with ConsoleServer(cfg) as srv:
        c = Client(srv.base)
        c.login()
        status, page = c.get("/brands")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert status == 200 and csrf, page
        status, page = c._post("/brands/scan", f"csrf={csrf.group(1)}".encode())
    assert status == 503
    assert "The scan could not read passive DNS: ClickHouse clickhouse://" in page
