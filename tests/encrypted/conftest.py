"""One `mamori serve` with DoT, DoH and DoQ for the encrypted DNS tests, in front of a
local authoritative server (example.test), with a policy zone blocking
blocked.example.test for everyone and games.example.test for the "kids" group,
whose member is the device named "kid-phone" (over any transport)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.encrypted.certs import SERVER_NAME, Pki, make_pki
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port

ZONE = """
$TTL 300
@        IN SOA ns1 hostmaster 1 3600 600 86400 60
@        IN NS ns1
ns1      IN A 127.0.0.1
www      IN A 192.0.2.1
blocked  IN A 192.0.2.66
games    IN A 192.0.2.77
"""

POLICY = """$TTL 60
@ SOA ns.policy. h.policy. 1 3600 600 86400 30
@ NS ns.policy.
blocked.example.test CNAME .
dns.mamori.test A 127.0.0.1
"""

KIDS = """$TTL 60
@ SOA ns.kids. h.kids. 1 3600 600 86400 30
@ NS ns.kids.
games.example.test CNAME .
"""


@dataclass
class Service:
    mamori: MamoriProcess
    pki: Pki
    dot: int
    doh: int
    doq: int


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def auth() -> Iterator[AuthServer]:
    with AuthServer(ZONE, "example.test.") as srv:
        yield srv


def start_service(tmp: Path, pki: Pki, auth: AuthServer, tls: str = "", more: str = "") -> Service:
    (tmp / "policy.rpz").write_text(POLICY)
    (tmp / "kids.rpz").write_text(KIDS)
    dot, doh = free_port(), free_port()
    doq = free_port()
    extra = f"""
[tls]
cert = "{pki.cert}"
key = "{pki.key}"
server_name = "{SERVER_NAME}"
{tls}
[[group]]
name = "kids"
clients = []
client_ids = ["kid-phone"]
[[rpz]]
name = "policy"
file = "{tmp / "policy.rpz"}"
[[rpz]]
name = "kids"
file = "{tmp / "kids.rpz"}"
groups = ["kids"]
{more}
"""
    m = MamoriProcess(
        tmp, [f"127.0.0.1:{auth.port}"], extra=extra,
        dot=[f"127.0.0.1:{dot}"], doh=[f"127.0.0.1:{doh}"], doq=[f"127.0.0.1:{doq}"],
    )  # fmt: skip
    m.start()
    return Service(m, pki, dot, doh, doq)


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, auth: AuthServer
) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("mamori"), pki, auth)
    try:
        yield svc
    finally:
        svc.mamori.stop()
