"""DDR (RFC 9462): ``_dns.resolver.arpa`` SVCB answered by the pipeline itself, checked
with dnspython's SVCB parser against RFC 9460/9461 and RFC 9250 (DoQ)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rdtypes.svcbbase as svcb
import pytest

from mamori import config
from mamori.resolver.events import EventQueue
from mamori.resolver.pipeline import Pipeline

BASE = '[server]\nallow = ["127.0.0.0/8"]\n{server}\n[upstream]\nservers = ["127.0.0.1:9"]\n{tls}'
TLS = '[tls]\ncert = "c.pem"\nkey = "k.pem"\nserver_name = "dns.example.net"\n'


def _ask(server: str, tls: str = TLS, name: str = "_dns.resolver.arpa", client: str = "127.0.0.1",
         **make: object) -> tuple[dns.message.Message, EventQueue]:  # fmt: skip
    cfg = config.loads(BASE.format(server=server, tls=tls), Path("ddr.toml"))
    q = dns.message.make_query(name, "SVCB", **make)  # type: ignore[arg-type]
    events = EventQueue(10)

    async def run() -> bytes | None:
        p = Pipeline(cfg, events)
        out = p.handle(q.to_wire(), (client, 5353), lambda r, a: None, False)
        assert not p.tasks, "answered at once, never forwarded"
        p.close()
        return out

    resp = asyncio.run(run())
    assert resp is not None
    m = dns.message.from_wire(resp)
    assert m.id == q.id and m.question == q.question
    return m, events


def _params(rd: svcb.SVCBBase) -> dict[svcb.ParamKey, object]:
    return dict(rd.params)


def test_ddr_announces_each_encrypted_transport_with_rfc_9461_keys() -> None:
    m, events = _ask(
        'dot = ["127.0.0.1:8853", "[::1]:8853"]\ndoh = ["0.0.0.0:8443"]\ndoq = ["[2001:db8::53]"]',
        use_edns=0, want_dnssec=True,
    )  # fmt: skip
    assert m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.AA and m.flags & dns.flags.RA
    assert m.edns == 0 and m.ednsflags & dns.flags.DO
    (rrset,) = m.answer
    assert rrset.rdtype == dns.rdatatype.SVCB and rrset.name.to_text() == "_dns.resolver.arpa."
    by_priority = {rd.priority: rd for rd in rrset}
    assert sorted(by_priority) == [1, 2, 3]  # ServiceMode only (no AliasMode 0)
    dot, doh, doq = by_priority[1], by_priority[2], by_priority[3]
    for rd in (dot, doh, doq):
        assert rd.target.to_text() == "dns.example.net."
    p = _params(dot)
    assert p[svcb.ParamKey.ALPN].ids == (b"dot",)  # type: ignore[attr-defined]
    assert p[svcb.ParamKey.PORT].port == 8853  # type: ignore[attr-defined]
    assert [a for a in p[svcb.ParamKey.IPV4HINT].addresses] == ["127.0.0.1"]  # type: ignore[attr-defined]
    assert [a for a in p[svcb.ParamKey.IPV6HINT].addresses] == ["::1"]  # type: ignore[attr-defined]
    assert svcb.ParamKey.DOHPATH not in p
    p = _params(doh)
    assert p[svcb.ParamKey.ALPN].ids == (b"h2",)  # type: ignore[attr-defined]
    assert p[svcb.ParamKey.PORT].port == 8443  # type: ignore[attr-defined]
    # RFC 9461 5.1: a relative URI Template with the "dns" variable
    assert p[svcb.ParamKey.DOHPATH].value == b"/dns-query{?dns}"  # type: ignore[attr-defined]
    assert svcb.ParamKey.IPV4HINT not in p  # 0.0.0.0 is no address to connect to
    p = _params(doq)
    assert p[svcb.ParamKey.ALPN].ids == (b"doq",)  # type: ignore[attr-defined]
    assert p[svcb.ParamKey.PORT].port == 853  # type: ignore[attr-defined]
    assert [a for a in p[svcb.ParamKey.IPV6HINT].addresses] == ["2001:db8::53"]  # type: ignore[attr-defined]
    (event,) = events.drain()
    assert event[7] == 1 and event[8] == "ddr" and "alpn=dot" in event[4]


def test_svcb_keys_are_in_increasing_order_on_the_wire() -> None:
    from mamori.config import Endpoint
    from mamori.resolver.ddr import svcb_rdata

    rd = svcb_rdata(2, "dns.example.net", "h2", (Endpoint("192.0.2.1", 443),), "/dns-query{?dns}")
    i, keys = 2 + len(b"\x03dns\x07example\x03net\x00"), []
    while i < len(rd):
        keys.append(rd[i] << 8 | rd[i + 1])
        i += 4 + (rd[i + 2] << 8 | rd[i + 3])
    assert keys == sorted(set(keys)) == [1, 3, 4, 7]


@pytest.mark.parametrize(
    ("server", "tls"),
    [
        ('dot = ["127.0.0.1:8853"]', '[tls]\ncert = "c.pem"\nkey = "k.pem"\n'),  # no server_name
        ("", TLS),  # no encrypted listener
    ],
)
def test_ddr_is_nodata_without_a_server_name_or_an_encrypted_listener(
    server: str, tls: str
) -> None:
    m, _ = _ask(server, tls)
    assert m.rcode() == dns.rcode.NOERROR and not m.answer


def test_ddr_is_refused_outside_allow_and_other_svcb_names_are_forwarded() -> None:
    m, _ = _ask('dot = ["127.0.0.1:8853"]', client="192.0.2.1")
    assert m.rcode() == dns.rcode.REFUSED and not m.answer
    m, _ = _ask('dot = ["127.0.0.1:8853"]', use_edns=1)
    assert m.rcode() == dns.rcode.BADVERS and not m.answer
    cfg = config.loads(BASE.format(server="", tls=TLS), Path("ddr.toml"))
    q = dns.message.make_query("_dns.example.net", "SVCB")

    async def run() -> None:
        p = Pipeline(cfg, EventQueue(10))
        assert p.handle(q.to_wire(), ("127.0.0.1", 1), lambda r, a: None, False) is None
        assert len(p.tasks) == 1  # on its way upstream
        for t in p.tasks:
            t.cancel()
        await asyncio.gather(*p.tasks, return_exceptions=True)
        p.close()

    asyncio.run(run())
