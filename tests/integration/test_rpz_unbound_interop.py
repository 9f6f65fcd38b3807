"""Interop: Debian's Unbound and mamori with the same policy zone give the same answers.

Both forward to the same authoritative fixture. Compared: rcode, TC flag and
the answer section (owner, type, rdata). Known deviations are asserted as
such, so a change on either side shows up (docs/reference/rpz.md lists them).
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.integration.test_rpz_service import POLICY
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.unbound import Unbound

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    tmp = tmp_path_factory.mktemp("interop")
    zone_file = tmp / "local.rpz"
    zone_file.write_text(POLICY)
    with AuthServer(ZONE, "example.test.") as auth:
        ub = Unbound(
            require_binary("unbound"),
            tmp / "unbound",
            auth.port,
            f'rpz:\n  name: "rpz.local."\n  zonefile: "{zone_file}"\n',
        ).start(probe="www.example.test")
        m = MamoriProcess(
            tmp,
            [f"127.0.0.1:{auth.port}"],
            extra=f'[[rpz]]\nname = "rpz.local"\nfile = "{zone_file}"\n',
            allow=["127.0.0.0/8"],
        ).start()
        try:
            yield ub.port, m.port
        finally:
            ub.stop()
            assert m.stop() == 0


def _ask(
    port: int, name: str, rtype: str, tcp: bool = False, source: str | None = None
) -> tuple[object, ...]:
    q = dns.message.make_query(name, rtype)
    try:
        if tcp:
            r = dns.query.tcp(q, "127.0.0.1", port=port, timeout=2, source=source)
        else:
            r = dns.query.udp(q, "127.0.0.1", port=port, timeout=2, source=source)
    except dns.exception.Timeout:
        return ("no answer",)
    answer = sorted(
        f"{rr.name.to_text().lower()} {rr.rdtype} {rd.to_text().lower()}"
        for rr in r.answer
        for rd in rr
    )
    return (r.rcode(), bool(r.flags & dns.flags.TC), answer)


@pytest.mark.parametrize(
    ("name", "rtype", "tcp"),
    [
        ("bad.example.test", "A", False),  # QNAME NXDOMAIN
        ("a.b.bad.example.test", "A", False),  # wildcard NXDOMAIN
        ("nodata.example.test", "A", False),  # NODATA
        ("local.example.test", "A", False),  # Local-Data
        ("local.example.test", "AAAA", False),  # Local-Data, other type: NODATA
        ("www.example.test", "A", False),  # PASSTHRU
        ("alias.example.test", "A", False),  # not listed: upstream CNAME chain
        ("drop.example.test", "A", False),  # DROP
        ("tcp.example.test", "A", False),  # TCP-only over UDP: TC=1
        ("missing.example.test", "A", False),  # not listed, upstream NXDOMAIN
        ("mx1.example.test", "A", False),  # Response-IP: answer address listed
        ("follow.example.test", "A", False),  # policy CNAME, followed upstream
        ("tobad.example.test", "A", False),  # policy CNAME to a blocked name
    ],
)
def test_same_answers_as_unbound(peers: tuple[int, int], name: str, rtype: str, tcp: bool) -> None:
    ub_port, m_port = peers
    assert _ask(m_port, name, rtype, tcp) == _ask(ub_port, name, rtype, tcp)


@pytest.mark.parametrize("name", ["www.example.test", "local.example.test", "missing.example.test"])
def test_client_ip_trigger_same_as_unbound(peers: tuple[int, int], name: str) -> None:
    ub_port, m_port = peers
    # 32.2.0.0.127.rpz-client-ip CNAME . : every query from 127.0.0.2 is NXDOMAIN
    ours = _ask(m_port, name, "A", source="127.0.0.2")
    assert ours == _ask(ub_port, name, "A", source="127.0.0.2")
    assert ours[0] == dns.rcode.NXDOMAIN


def test_policy_cname_target_is_rechecked_unlike_unbound(peers: tuple[int, int]) -> None:
    """Known difference: mamori applies the policy to a policy CNAME's target
    (hop -> local.example.test, itself Local-Data 192.0.2.200); Unbound asks
    the upstream for the target, which does not have it (NXDOMAIN)."""
    ub_port, m_port = peers
    ours = _ask(m_port, "hop.example.test", "A")
    theirs = _ask(ub_port, "hop.example.test", "A")
    assert ours[0] == dns.rcode.NOERROR
    assert "local.example.test. 1 192.0.2.200" in ours[2]  # type: ignore[operator]
    assert theirs[0] == dns.rcode.NXDOMAIN
    assert theirs[2] == ["hop.example.test. 5 local.example.test."]
