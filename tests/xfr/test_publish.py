"""The publisher: versions and IXFR history, serial bumps, TSIG over multi-message AXFR."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import pytest

from mamori import config
from mamori.policy import zone
from mamori.xfr.primary import Publisher

SECRET = base64.b64encode(b"k" * 32).decode()
HEAD = "$TTL 60\n@ SOA ns.p.test. h.p.test. {serial} 60 30 600 30\n@ NS localhost.\n"


def _zone(tmp: Path, serial: int, names: list[str], tag: str) -> zone.LoadedZone:
    f = tmp / f"{tag}.zone"
    f.write_text(HEAD.format(serial=serial) + "".join(f"{n} CNAME .\n" for n in names))
    return zone.load(f, "p.test.")


def _cfg(tmp: Path, algorithm: str = "hmac-sha256") -> config.Config:
    text = (
        f'[store]\npath = "{tmp}/m.db"\n'
        f'[publish]\nallow = ["127.0.0.1/32"]\nkeys = ["k:{algorithm}:{SECRET}"]\nhistory = 5\n'
        f'[[rpz]]\nname = "p.test"\nfile = "{tmp}/x.zone"\npublish = true\n'
    )
    return config.loads(text, tmp / "m.toml", resolver=False)


async def _publish(pub: Publisher, z: zone.LoadedZone, _version: int) -> None:
    pub.on_zones([z])
    await asyncio.gather(*pub.tasks)


def test_versions_history_and_serial_bump(tmp_path: Path) -> None:
    async def run() -> None:
        pub = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 1, ["a", "b"], "v1"), 1)
        await _publish(pub, _zone(tmp_path, 2, ["a", "c"], "v2"), 2)
        # Changed without a higher serial: published as 3.
        await _publish(pub, _zone(tmp_path, 2, ["a", "c", "d"], "v3"), 3)
        # Reloaded unchanged: no new version.
        await _publish(pub, _zone(tmp_path, 2, ["a", "c", "d"], "v4"), 4)
        p = pub.zones["p.test."]
        assert p.serial == 3
        assert [(v.old, v.new, len(v.deleted), len(v.added)) for v in p.history] == [
            (1, 2, 1, 1),
            (2, 3, 0, 1),
        ]
        chain = pub._chain(p, 1)
        assert chain is not None and [v.new for v in chain] == [2, 3]
        assert pub._chain(p, 0) is None  # not in the history: AXFR
        # The published serial survives a restart.
        again = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(again, _zone(tmp_path, 2, ["a", "c", "d"], "v5"), 5)
        assert again.zones["p.test."].serial == 3

    asyncio.run(run())


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "hmac-sha1", "hmac-sha512"])
def test_tsig_signed_multi_message_axfr_verifies(tmp_path: Path, algorithm: str) -> None:
    names = [f"name-{i:05d}.example" for i in range(3000)]  # > 16 kB: several messages

    async def run() -> list[bytes]:
        pub = Publisher(_cfg(tmp_path, algorithm), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 7, names, "big"), 1)
        out: list[bytes] = []
        await pub.serve(wire, ("192.0.2.99", 5300), lambda m, _a: out.append(m), True)
        return out

    ring = dns.tsigkeyring.from_text({"k": (algorithm, SECRET)})
    q = dns.message.make_query("p.test.", dns.rdatatype.AXFR)
    q.use_tsig(ring, "k")
    wire = q.to_wire()
    messages = asyncio.run(run())
    assert len(messages) > 2
    ctx = None
    count = 0
    for m in messages:
        r = dns.message.from_wire(
            m, keyring=ring, request_mac=q.mac, xfr=True, tsig_ctx=ctx, multi=True
        )
        assert r.had_tsig and r.rcode() == dns.rcode.NOERROR
        ctx = r.tsig_ctx
        count += sum(len(rrset) for rrset in r.answer)
    assert count == 3000 + 3  # rules, NS, SOA twice


def test_unsigned_request_from_outside_allow_is_refused(tmp_path: Path) -> None:
    async def run() -> list[bytes]:
        pub = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 1, ["a"], "v1"), 1)
        out: list[bytes] = []
        q = dns.message.make_query("p.test.", dns.rdatatype.AXFR)
        await pub.serve(q.to_wire(), ("192.0.2.99", 5300), lambda m, _a: out.append(m), True)
        return out

    (answer,) = asyncio.run(run())
    assert dns.message.from_wire(answer).rcode() == dns.rcode.REFUSED


@pytest.mark.parametrize("serial", [1, 2])
def test_ixfr_from_the_current_serial_is_one_soa(tmp_path: Path, serial: int) -> None:
    async def run() -> list[bytes]:
        pub = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 2, ["a"], "v1"), 1)
        q = dns.message.make_query("p.test.", dns.rdatatype.IXFR)
        q.authority.append(dns.rrset.from_text("p.test.", 0, "IN", "SOA", f". . {serial} 0 0 0 0"))
        out: list[bytes] = []
        await pub.serve(q.to_wire(), ("127.0.0.1", 5300), lambda m, _a: out.append(m), True)
        return out

    messages = asyncio.run(run())
    r = dns.message.from_wire(messages[0], xfr=True)
    if serial == 2:  # up to date: the SOA alone
        assert len(messages) == 1 and [x.rdtype for x in r.answer] == [dns.rdatatype.SOA]
    else:  # serial 1 is not in the history: the whole zone (AXFR form)
        assert sum(len(x) for x in r.answer) == 4


def test_publish_keys_limit_which_keys_may_transfer(tmp_path: Path) -> None:
    other = base64.b64encode(b"o" * 32).decode()
    text = (
        f'[store]\npath = "{tmp_path}/m.db"\n'
        f'[publish]\nkeys = ["k:hmac-sha256:{SECRET}", "other:hmac-sha256:{other}"]\n'
        f'[[rpz]]\nname = "p.test"\nfile = "{tmp_path}/x.zone"\npublish = true\n'
        'publish_keys = ["other"]\n'
    )
    cfg = config.loads(text, tmp_path / "m.toml", resolver=False)

    async def ask(keyname: str, secret: str) -> int:
        pub = Publisher(cfg, tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 1, ["a"], "v1"), 1)
        ring = dns.tsigkeyring.from_text({keyname: ("hmac-sha256", secret)})
        q = dns.message.make_query("p.test.", dns.rdatatype.AXFR)
        q.use_tsig(ring, keyname)
        out: list[bytes] = []
        await pub.serve(q.to_wire(), ("192.0.2.99", 5300), lambda m, _a: out.append(m), True)
        return dns.message.from_wire(out[0], keyring=ring, request_mac=q.mac).rcode()

    assert asyncio.run(ask("k", SECRET)) == dns.rcode.REFUSED  # a known key, not for this zone
    assert asyncio.run(ask("other", other)) == dns.rcode.NOERROR


def test_serial_wrapped_while_stopped_is_served_after_restart(tmp_path: Path) -> None:
    """Issue 13: the file serial wrapped (4000000000 -> 1158658354, RFC 1982) while
    mamori was stopped; the new serial is greater in serial order and must be served."""

    async def run() -> None:
        pub = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 4_000_000_000, ["a"], "v1"), 1)
        assert pub.zones["p.test."].serial == 4_000_000_000
        again = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(again, _zone(tmp_path, 1_158_658_354, ["a", "b"], "v2"), 2)
        assert again.zones["p.test."].serial == 1_158_658_354

    asyncio.run(run())


def test_file_serial_behind_the_published_one_after_restart_moves_forward(
    tmp_path: Path,
) -> None:
    """A file serial that went backwards while mamori was stopped (new content) is
    published as the stored serial + 1; the same file again keeps that serial."""

    async def run() -> None:
        pub = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 50, ["a"], "v1"), 1)
        again = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(again, _zone(tmp_path, 7, ["a", "b"], "v2"), 2)
        assert again.zones["p.test."].serial == 51
        third = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(third, _zone(tmp_path, 7, ["a", "b"], "v3"), 3)
        assert third.zones["p.test."].serial == 51

    asyncio.run(run())


def test_new_serial_exactly_half_way_round_is_not_taken_as_newer(tmp_path: Path) -> None:
    """RFC 1982: 2**31 apart is undefined; BIND would not transfer, so the change is
    published as the previous serial + 1."""

    async def run() -> None:
        pub = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 10, ["a"], "v1"), 1)
        await _publish(pub, _zone(tmp_path, 10 + 2**31, ["a", "b"], "v2"), 2)
        p = pub.zones["p.test."]
        assert p.serial == 11
        assert [(v.old, v.new) for v in p.history] == [(10, 11)]

    asyncio.run(run())


def test_ixfr_request_from_a_serial_ahead_after_a_wrap_gets_the_zone(tmp_path: Path) -> None:
    """A secondary at 4000000000 asks IXFR; we publish 1158658354 (ahead after the
    wrap): it gets the zone, not 'up to date'."""

    async def run() -> list[bytes]:
        pub = Publisher(_cfg(tmp_path), tmp_path / "state")
        await _publish(pub, _zone(tmp_path, 1_158_658_354, ["a"], "v1"), 1)
        q = dns.message.make_query("p.test.", dns.rdatatype.IXFR)
        q.authority.append(dns.rrset.from_text("p.test.", 0, "IN", "SOA", ". . 4000000000 0 0 0 0"))
        out: list[bytes] = []
        await pub.serve(q.to_wire(), ("127.0.0.1", 5300), lambda m, _a: out.append(m), True)
        return out

    r = dns.message.from_wire(asyncio.run(run())[0], xfr=True)
    assert sum(len(x) for x in r.answer) == 4  # SOA, NS, a, SOA: the whole zone
