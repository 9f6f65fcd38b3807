"""STIX 2.1 bundles, TAXII 2.1 collections and MISP feeds as feed sources.

The indicators are made with the OASIS ``stix2`` library from real URLhaus
names, so the fixtures are valid STIX 2.1; the TAXII server and MISP feed host
are local HTTP servers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stix2

from mamori import config
from mamori.feeds.dataset import FeedDB, db_path
from mamori.feeds.normalize import Entry
from mamori.feeds.parsers import FeedError, parse, stix
from mamori.feeds.parsers.misp import parse_events
from mamori.feeds.sources import update
from tests.support.feedserver import FeedServer, TaxiiServer

URLHAUS = Path(__file__).resolve().parents[3] / "shared/data/feeds/urlhaus-filter"


def _names(n: int) -> list[str]:
    out = []
    for line in (URLHAUS / "urlhaus-filter-domains.txt").read_text().splitlines():
        if line and not line.startswith("#") and not line[0].isdigit():
            out.append(line.strip())
        if len(out) == n:
            break
    return out


def _indicators(names: list[str]) -> list[Any]:
    malware = stix2.Malware(name="Mozi", is_family=True, malware_types=["bot"])
    objs: list[Any] = [malware]
    for i, name in enumerate(names):
        ind = stix2.Indicator(
            name=f"URLhaus malware_download {name}",
            indicator_types=["malicious-activity"],
            pattern_type="stix",
            pattern=f"[domain-name:value = '{name}']"
            if i % 2
            else f"[url:value = 'http://{name}/bins/mozi.m']",
            valid_from="2026-11-01T00:00:00Z",
            external_references=[
                {"source_name": "urlhaus", "url": f"https://urlhaus.abuse.ch/host/{name}/"}
            ],
        )
        objs += [ind, stix2.Relationship(ind, "indicates", malware)]
    return objs


def _bundle(names: list[str]) -> stix2.Bundle:
    extra = [
        stix2.Indicator(  # several values at once, an address, a network
            name="C2 servers",
            pattern="[ipv4-addr:value IN ('198.51.100.7', '203.0.113.0/24')]"
            " OR [ipv6-addr:value = '2001:db8::bad']",
            pattern_type="stix",
            valid_from="2026-11-01T00:00:00Z",
        ),
        stix2.Indicator(  # the names below a domain
            name="kit",
            pattern="[domain-name:value LIKE '%.phish-kit.example']",
            pattern_type="stix",
            valid_from="2026-11-01T00:00:00Z",
        ),
        stix2.Indicator(  # a name AND a file: the name alone does not meet it
            name="dropper",
            pattern="[domain-name:value = 'cdn.example'] AND [file:hashes.MD5 = "
            "'d41d8cd98f00b204e9800998ecf8427e']",
            pattern_type="stix",
            valid_from="2026-11-01T00:00:00Z",
        ),
        stix2.Indicator(
            name="old",
            pattern="[domain-name:value = 'expired.example']",
            pattern_type="stix",
            valid_from="2020-01-01T00:00:00Z",
            valid_until="2021-01-01T00:00:00Z",
        ),
        stix2.Indicator(
            name="withdrawn",
            pattern="[domain-name:value = 'revoked.example']",
            pattern_type="stix",
            valid_from="2026-11-01T00:00:00Z",
            revoked=True,
        ),
        stix2.Indicator(
            name="yara", pattern="rule x { condition: true }", pattern_type="yara",
            valid_from="2026-11-01T00:00:00Z",
        ),
        stix2.DomainName(value="observed-not-malicious.example"),
    ]  # fmt: skip
    return stix2.Bundle(*_indicators(names), *extra)


def test_stix_bundle_indicators(tmp_path: Path) -> None:
    names = _names(40)
    bundle = json.loads(_bundle(names).serialize())
    result = parse("stix", json.dumps(bundle, indent=1).splitlines())
    got = {(e.kind, e.value) for e in result.entries}
    assert {("domain", n) for n in names} <= got
    assert {
        ("ip", "198.51.100.7"),
        ("cidr", "203.0.113.0/24"),
        ("ip", "2001:db8::bad"),
        ("wildcard", "phish-kit.example"),
    } <= got
    assert len(got) == 44  # nothing else: no observed-only name, no file-bound name
    reasons = {why.split(" (")[0] for _n, _id, why in result.skipped}
    assert reasons == {"needs non-network observables", "revoked", "pattern type yara", "expired"}
    first = next(e for e in result.entries if e.value == names[0])
    assert first.reason == f"URLhaus malware_download {names[0]}"
    assert first.reference == f"https://urlhaus.abuse.ch/host/{names[0]}/"


def test_stix_bad_pattern_is_rejected_with_its_position() -> None:
    objs = [
        {"type": "indicator", "id": "indicator--1", "pattern": "[domain-name:value = "},
        {"type": "indicator", "id": "i--2", "pattern": "[domain-name:value = 'ok.example']"},
        "garbage",
    ]
    result = stix.parse_objects(objs)
    assert [(n, why.split(":")[0]) for n, _t, why in result.rejected] == [
        (1, "bad STIX pattern"),
        (3, "not a STIX object"),
    ]
    assert result.entries == [Entry("domain", "ok.example")]
    with pytest.raises(FeedError, match="not STIX JSON"):
        parse("stix", ["<html>"])


def _event(uuid: str, info: str, attrs: list[dict[str, Any]], stamp: int = 1) -> dict[str, Any]:
    return {
        "Event": {
            "uuid": uuid,
            "info": info,
            "timestamp": str(stamp),
            "Attribute": attrs,
            "Object": [
                {
                    "name": "domain-ip",
                    "Attribute": [
                        {"type": "domain", "value": f"obj-{uuid[:4]}.example", "to_ids": True},
                        {"type": "ip-dst", "value": "192.0.2.66", "to_ids": True},
                    ],
                }
            ],
        }
    }


def _misp_dir(root: Path, names: list[str], stamp: int = 1) -> None:
    root.mkdir(parents=True, exist_ok=True)
    events = {
        "5f1a0c4e-0000-4000-8000-000000000001": _event(
            "5f1a0c4e-0000-4000-8000-000000000001",
            "Phishing campaign against a bank",
            [
                {"type": "domain", "value": names[0], "to_ids": True},
                {"type": "url", "value": f"https://{names[1]}/login", "to_ids": True},
                {"type": "hostname|port", "value": f"{names[2]}|8080", "to_ids": True},
                {"type": "domain|ip", "value": f"{names[3]}|192.0.2.10", "to_ids": True},
                {"type": "domain", "value": "context-only.example", "to_ids": False},
                {"type": "domain", "value": "deleted.example", "to_ids": True, "deleted": True},
                {"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e", "to_ids": True},
                {"type": "domain", "value": "bad..name", "to_ids": True},
            ],
            stamp,
        ),
        "5f1a0c4e-0000-4000-8000-000000000002": _event(
            "5f1a0c4e-0000-4000-8000-000000000002",
            "Botnet C2",
            [{"type": "ip-dst|port", "value": "198.51.100.20|443", "to_ids": "1"}],
        ),
    }
    manifest = {u: {"info": e["Event"]["info"], "timestamp": e["Event"]["timestamp"]}
                for u, e in events.items()}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    for u, e in events.items():
        (root / f"{u}.json").write_text(json.dumps(e))


def test_misp_events_attributes_for_detection(tmp_path: Path) -> None:
    names = _names(4)
    _misp_dir(tmp_path / "misp", names)
    events = [json.loads(p.read_text()) for p in sorted((tmp_path / "misp").glob("5f*.json"))]
    result = parse_events(events)
    got = {(e.kind, e.value) for e in result.entries}
    assert got == {
        *(("domain", n) for n in names),
        ("domain", "obj-5f1a.example"),
        ("ip", "192.0.2.66"),
        ("ip", "198.51.100.20"),
    }
    assert sorted(why for _n, _v, why in result.skipped) == ["deleted", "to_ids off"]
    assert [v for _n, v, _w in result.rejected] == ["bad..name"]
    e = next(e for e in result.entries if e.value == names[0])
    assert e.reason == "Phishing campaign against a bank"
    assert e.reference == "misp:event/5f1a0c4e-0000-4000-8000-000000000001"


@pytest.fixture
def misp_host(tmp_path: Path) -> Iterator[FeedServer]:
    _misp_dir(tmp_path / "www" / "misp", _names(4))
    srv = FeedServer(tmp_path / "www")
    yield srv
    srv.close()


def _cfg(tmp_path: Path, feed: str) -> config.Config:
    text = f"""
[upstream]
servers = ["127.0.0.1:53"]
[store]
path = "{tmp_path / "store" / "m.sqlite"}"
[[feed]]
{feed}
"""
    (tmp_path / "m.toml").write_text(text)
    return config.load(tmp_path / "m.toml")


def test_misp_feed_over_http_fetches_only_changed_events(
    tmp_path: Path, misp_host: FeedServer
) -> None:
    cfg = _cfg(
        tmp_path,
        f'name = "misp"\nurl = "http://127.0.0.1:{misp_host.port}/misp"\nformat = "misp"\n'
        'category = "phishing"',
    )
    r = update(cfg.feeds[0], cfg.store)
    assert r.entries == 7 and "2 events, 2 fetched" in r.source
    _misp_dir(tmp_path / "www" / "misp", _names(4), stamp=2)  # event 1 changed
    misp_host.requests.clear()
    r = update(cfg.feeds[0], cfg.store)
    assert "1 fetched" in r.source
    assert [p for p, _c in misp_host.requests] == [
        "/misp/manifest.json",
        "/misp/5f1a0c4e-0000-4000-8000-000000000001.json",
    ]
    misp_host.close()  # the feed host is gone: the cached events serve
    r = update(cfg.feeds[0], cfg.store)
    assert r.entries == 7 and r.source.startswith("cached copy")


def test_taxii_collection_incremental_with_basic_auth(tmp_path: Path) -> None:
    names = _names(30)
    srv = TaxiiServer()
    try:
        objs = [json.loads(o.serialize()) for o in _indicators(names[:20])]
        before = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        srv.add(objs, before)
        cfg = _cfg(
            tmp_path,
            f'name = "tx"\nurl = "{srv.url}"\nformat = "taxii"\nuser = "analyst"\n'
            'password = "s3cret"\ncategory = "malware"',
        )
        r = update(cfg.feeds[0], cfg.store)
        assert r.entries == 20
        pages = [q for p, q in srv.requests if p.endswith("/objects/")]
        assert len(pages) == 1 and "added_after" not in pages[0]
        # new indicators arrive; one old indicator is revoked (a new version)
        time.sleep(0.01)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        revoked = dict(objs[1], revoked=True, modified=now)
        srv.add([*(json.loads(o.serialize()) for o in _indicators(names[20:])), revoked], now)
        srv.requests.clear()
        r = update(cfg.feeds[0], cfg.store)
        assert (r.entries, r.added, r.removed) == (29, 10, 1)
        (query,) = [q for p, q in srv.requests if p.endswith("/objects/")]
        assert "added_after" in query
        with FeedDB(db_path(cfg.store.path)) as db:
            (p,) = db.provenance(names[5])
            assert p.reference == f"https://urlhaus.abuse.ch/host/{names[5]}/"
        srv.down = True  # unreachable: the cached objects serve
        r = update(cfg.feeds[0], cfg.store)
        assert r.entries == 29 and r.source.startswith("cached copy")
    finally:
        srv.close()


def test_taxii_wrong_credentials_without_a_copy_is_refused(tmp_path: Path) -> None:
    srv = TaxiiServer()
    try:
        cfg = _cfg(
            tmp_path,
            f'name = "tx"\nurl = "{srv.url}"\nformat = "taxii"\nuser = "x"\npassword = "y"',
        )
        with pytest.raises(FeedError, match="TAXII"):
            update(cfg.feeds[0], cfg.store)
    finally:
        srv.close()


def test_malformed_json_shapes_are_skipped_or_rejected_not_crashes() -> None:
    """Properties of the wrong JSON type (found by the threat-json fuzz target)."""
    pattern = "[domain-name:value = 'ok.example']"
    objs = [
        {"type": "indicator", "pattern": pattern, "indicator_types": [{"x": 1}, 7]},
        {"type": "indicator", "pattern": pattern, "indicator_types": 7},
        {"type": "indicator", "pattern": pattern, "external_references": 7},
        {"type": "indicator", "pattern": pattern, "external_references": [{"url": {"a": 1}}]},
        # a timestamp without a zone is UTC (was: naive/aware comparison TypeError)
        {"type": "indicator", "pattern": pattern, "valid_until": "2000-01-01T00:00:00"},
        {"type": "indicator", "pattern": pattern, "valid_until": "2999-01-01T00:00:00"},
    ]
    result = stix.parse_objects(objs)
    assert len(result.entries) == 5 and result.entries[0] == Entry("domain", "ok.example")
    assert [why.split(" ")[0] for _n, _t, why in result.skipped] == ["expired"]
    events = [
        {"Event": {"Attribute": [{"type": {"a": 1}, "value": "x.example", "to_ids": True},
                                 {"type": ["url"], "value": "x.example", "to_ids": True}]}},
        {"Event": {"Attribute": 7, "Object": "text"}},
        {"Event": {"Object": [{"Attribute": 3}, {"Attribute": [{"type": "domain",
                   "value": "obj.example", "to_ids": True}]}]}},
    ]  # fmt: skip
    result = parse_events(events)
    assert result.entries == [Entry("domain", "obj.example")] and not result.rejected
