"""The DNSBL responder answers as rbldnsd (Debian's, the DNSBL server most lists run on)
does for the same data: the real URLhaus addresses and names, plus CIDR and wildcard entries.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import pytest

from mamori.feeds import guard
from mamori.feeds.normalize import entry
from tests.conftest import require_binary
from tests.integration.test_resolver_service import ZONE
from tests.support.authserver import AuthServer
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port
from tests.support.wait import until

pytestmark = pytest.mark.integration

URLHAUS = Path(__file__).resolve().parents[3] / "shared/data/feeds/urlhaus-filter"
NETS = ["203.0.113.0/24", "198.51.100.128/25", "10.20.0.0/16"]
WILD = ["bad-cdn.example", "phish-kit.example"]


def _data() -> tuple[list[str], list[str]]:
    lines = (URLHAUS / "urlhaus-filter-domains.txt").read_text().splitlines()
    items = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    ips = [x for x in items if x.replace(".", "").isdigit()]
    names = [x for x in items if not x.replace(".", "").isdigit()]
    return ips, names


def _answer(port: int, qname: str) -> tuple[int, list[str]]:
    r = dns.query.udp(dns.message.make_query(qname, "A"), "127.0.0.1", port=port, timeout=3)
    return r.rcode(), sorted(rd.address for rrset in r.answer for rd in rrset if rrset.rdtype == 1)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, int, int]]:
    rbldnsd = require_binary("rbldnsd")
    tmp = tmp_path_factory.mktemp("rbl")
    # rbldnsd refuses to run as root and reads its files as its own user: give
    # it a world-readable copy of the data outside pytest's private tree.
    rbl = Path(tempfile.mkdtemp(prefix="mamori-rbldnsd-"))
    rbl.chmod(0o755)
    user = ["-u", "rbldns"] if os.geteuid() == 0 else []
    ips, names = _data()
    (tmp / "ips.txt").write_text("\n".join([*ips, *NETS]) + "\n")
    (tmp / "names.txt").write_text("\n".join([*names, *(f"*.{w}" for w in WILD)]) + "\n")
    # rbldnsd's forms of the same lists: ip4trie with the spam code, dnset with
    # the phishing code ("*.name": the names below, as mamori's "*.").
    (rbl / "rbl-ips").write_text(":127.0.0.2:listed\n" + "\n".join([*ips, *NETS]) + "\n")
    (rbl / "rbl-names").write_text(
        ":127.0.1.4:listed\n" + "\n".join([*names, *(f"*.{w}" for w in WILD)]) + "\n"
    )
    rport, mip, mname = free_port(), free_port(), free_port()
    log = (tmp / "rbldnsd.log").open("wb")
    proc = subprocess.Popen(
        [rbldnsd, "-n", *user, "-b", f"127.0.0.1/{rport}", "-w", str(rbl),
         "bl.test:ip4trie:rbl-ips", "dbl.test:dnset:rbl-names"],
        stderr=log,
    )  # fmt: skip
    extra = (
        f'[[feed]]\nname = "ips"\npath = "{tmp}/ips.txt"\nformat = "ips"\n'
        'category = "spam"\nenforce = false\n'
        f'[[feed]]\nname = "names"\npath = "{tmp}/names.txt"\nformat = "domains"\n'
        'category = "phishing"\nenforce = false\n'
        f'[[dnsbl]]\nzone = "bl.test"\nlisten = ["127.0.0.1:{mip}"]\nfeeds = ["ips"]\n'
        f'[[dnsbl]]\nzone = "dbl.test"\nlisten = ["127.0.0.1:{mname}"]\nfeeds = ["names"]\n'
        'kind = "domain"\n'
    )
    try:
        with AuthServer(ZONE, "example.test.") as up:
            m = MamoriProcess(tmp, [f"127.0.0.1:{up.port}"], extra=extra).start()
            try:
                assert until(lambda: _answer(mname, "test.dbl.test")[1] == ["127.0.0.2"], 30)
                assert until(lambda: _answer(rport, f"{names[0]}.dbl.test")[1] != [], 30)
                assert until(lambda: _answer(mname, f"{names[0]}.dbl.test")[1] != [], 30)
                yield rport, mip, mname, len(ips)
            finally:
                assert m.stop() == 0, m.stderr()
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(rbl)


def _reverse(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


def test_ip_answers_match_rbldnsd(servers: tuple[int, int, int, int]) -> None:
    rport, mport, _, _n = servers
    ips, _names = _data()
    rng = random.Random(5782)
    asks = rng.sample(ips, 300)
    asks += ["203.0.113.77", "198.51.100.200", "198.51.100.5", "10.20.255.1", "10.21.0.1"]
    asks += [f"192.0.2.{rng.randrange(256)}" for _ in range(50)]
    listed = 0
    for ip in asks:
        q = f"{_reverse(ip)}.bl.test"
        want = _answer(rport, q)
        assert _answer(mport, q) == want, ip
        listed += want[1] == ["127.0.0.2"]
    assert 300 < listed < len(asks)  # both listed and unlisted addresses were compared


def test_name_answers_match_rbldnsd(servers: tuple[int, int, int, int]) -> None:
    rport, _, mport, _ = servers
    _ips, names = _data()
    rng = random.Random(1918)
    asks = rng.sample(names, 300)
    asks += ["bad-cdn.example", "x.bad-cdn.example", "a.b.phish-kit.example", "clean.example"]
    asks += [f"www.{n}" for n in asks[:20]]  # exact entries do not cover their subdomains
    refused = 0
    for name in asks:
        q = f"{name}.dbl.test"
        if guard.refusal(entry(name), set()) is not None:
            # a public suffix (e.g. ams1.vultrobjects.com, a private PSL entry):
            # rbldnsd lists what it is given, mamori's guard does not
            assert _answer(mport, q)[1] == [], name
            refused += 1
            continue
        assert _answer(mport, q) == _answer(rport, q), name
    assert refused < 10
