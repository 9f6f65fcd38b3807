"""Interop: Debian's BIND 9 and mamori with the same policy zones give the same answers.

RPZ wildcards are DNS wildcards (RFC 4592): ``*.d`` applies to a name below
``d`` only when no name between them exists in the policy zone -- an owner
with a rule, or an empty non-terminal above one. BIND is the reference
(``response-policy``): it is also the primary of the zone ``rpz.test``, which
mamori transfers as a secondary, so the same zone is compared as loaded
(AXFR) and after an IXFR that removes the only owner below an empty
non-terminal and adds one that makes a new one. A second zone, ``list.test``,
is what mamori's feed compiler writes for a list: BIND must read it as the
list means it. Both resolvers forward to the same authoritative fixture
(every name answers A 192.0.2.1); compared: rcode and the answer section.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import pytest

from mamori.feeds.normalize import Entry
from mamori.feeds.publish import rpz as rpz_out
from tests.conftest import require_binary
from tests.support.authserver import AuthServer
from tests.support.bind import Bind
from tests.support.mamori_proc import MamoriProcess
from tests.support.wait import until

pytestmark = pytest.mark.integration

HEAD = "$TTL 60\n@ SOA ns.rpz.test. hostmaster.rpz.test. {serial} 2 1 600 30\n@ NS localhost.\n"
RULES_1 = """\
*.2o7.example.net CNAME .
x.112.2o7.example.net CNAME .
*.nx.example CNAME .
pass.nx.example CNAME rpz-passthru.
*.deep.example CNAME .
x.y.z.deep.example CNAME .
same.example CNAME .
*.same.example CNAME *.
x.y.same.example CNAME rpz-passthru.
*.w.example CNAME .
*.a.w.example CNAME rpz-passthru.
*.ixfr.example CNAME .
x.y.ixfr.example CNAME .
*.grow.example CNAME .
"""
# The IXFR: x.y.ixfr goes (y.ixfr is no longer a name of the zone), p.q.grow comes
# (q.grow becomes one), the rest stays.
RULES_2 = (
    RULES_1.replace("x.y.ixfr.example CNAME .\n", "") + "p.q.grow.example CNAME rpz-passthru.\n"
)

# A list as a feed gives it (adblock ``||tracker.example^``, ``a.b.tracker.example``,
# ``@@|ok.c.tracker.example^``): compiled by mamori's feed compiler into list.test.
LISTED = [Entry("domain", "tracker.example"), Entry("wildcard", "tracker.example")]
LISTED.append(Entry("domain", "a.b.tracker.example"))
ALLOWED = [Entry("domain", "ok.c.tracker.example")]

UP, NX, NODATA = "upstream", "NXDOMAIN", "NODATA"
# name: (answer with RULES_1, answer after the IXFR to RULES_2), as BIND gives them
CASES = {
    # The cases: 112.2o7 is an empty non-terminal; pass.nx has a rule of its own.
    "112.2o7.example.net": (UP, UP),
    "y.112.2o7.example.net": (UP, UP),
    "x.112.2o7.example.net": (NX, NX),
    "foo.2o7.example.net": (NX, NX),
    "sub.pass.nx.example": (UP, UP),
    "pass.nx.example": (UP, UP),
    "other.nx.example": (NX, NX),
    # A deeper chain of empty non-terminals.
    "z.deep.example": (UP, UP),
    "q.y.z.deep.example": (UP, UP),
    "q.z.deep.example": (UP, UP),
    "other.deep.example": (NX, NX),
    # Exact and wildcard at one owner, an exception below.
    "same.example": (NX, NX),
    "a.same.example": (NODATA, NODATA),
    "y.same.example": (UP, UP),
    "b.y.same.example": (UP, UP),
    "x.y.same.example": (UP, UP),
    # PASSTHRU under a wildcard: its parent a.w exists.
    "a.w.example": (UP, UP),
    "b.a.w.example": (UP, UP),
    "q.w.example": (NX, NX),
    # Changed by the IXFR.
    "y.ixfr.example": (UP, NX),
    "z.y.ixfr.example": (UP, NX),
    "x.y.ixfr.example": (NX, NX),
    "q.grow.example": (NX, UP),
    "r.q.grow.example": (NX, UP),
    "p.q.grow.example": (NX, UP),
    "s.grow.example": (NX, NX),
    # The zone compiled from the list: what the list means.
    "tracker.example": (NX, NX),
    "b.tracker.example": (NX, NX),
    "c.b.tracker.example": (NX, NX),
    "a.b.tracker.example": (NX, NX),
    "x.a.b.tracker.example": (NX, NX),
    "c.tracker.example": (NX, NX),
    "ok.c.tracker.example": (UP, UP),
    "x.ok.c.tracker.example": (NX, NX),
    "tracker.example.org": (UP, UP),
}
UPSTREAM = "$TTL 300\n. SOA ns.root. hostmaster.root. 1 3600 600 86400 60\n. NS ns.root.\n"
UPSTREAM += "".join(f"{name}. A 192.0.2.1\n" for name in CASES)


def _zone(serial: int, rules: str) -> str:
    return HEAD.format(serial=serial) + rules


@pytest.fixture(scope="module", params=["AXFR", "IXFR"])
def peers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Bind, MamoriProcess, int]]:
    """BIND (primary of rpz.test, resolver with both zones) and mamori (its secondary).

    With "IXFR", the zone file is edited and BIND reloaded before the tests:
    mamori follows by NOTIFY + IXFR. Yields (BIND, mamori, column of CASES).
    """
    tmp = tmp_path_factory.mktemp(f"bind-interop-{request.param}")
    named = require_binary("named")
    list_file = tmp / "list.test.zone"
    rpz_out.write_zone(list_file, "list.test.", rpz_out.rules(LISTED, ALLOWED, "."))
    with AuthServer(UPSTREAM, ".") as auth:
        d = tmp / "bind"
        b = Bind(named, d, "", recursion=True)
        (tmp / "m").mkdir()
        m = MamoriProcess(
            tmp / "m",
            [f"127.0.0.1:{auth.port}"],
            extra=(
                f'[[rpz]]\nname = "rpz.test"\nprimary = "127.0.0.1:{b.port}"\n'
                f'[[rpz]]\nname = "list.test"\nfile = "{list_file}"\n'
            ),
        )
        (d / "rpz.test.zone").write_text(_zone(1, RULES_1))
        b.zones = (
            'zone "rpz.test" { type primary; file "DIR/rpz.test.zone"; ixfr-from-differences yes;'
            " allow-transfer { 127.0.0.1; }; max-ixfr-ratio unlimited;"
            f" notify explicit; also-notify {{ 127.0.0.1 port {m.port}; }}; }};\n"
            f'zone "list.test" {{ type primary; file "{list_file}"; }};\n'
        ).replace("DIR", str(d))
        b.options = (
            f"forwarders {{ 127.0.0.1 port {auth.port}; }}; forward only;"
            ' response-policy { zone "rpz.test"; zone "list.test"; }'
            " qname-wait-recurse no min-update-interval 0;"
        )
        b.start("rpz.test")
        m.start()
        try:
            assert until(lambda: _answer(m.port, "x.112.2o7.example.net")[0] == NX), m.stderr()
            column = 0
            if request.param == "IXFR":
                (d / "rpz.test.zone").write_text(_zone(2, RULES_2))
                b.reload()
                assert until(lambda: "serial 1 -> 2" in m.stderr()), m.stderr()
                assert "IXFR from 127.0.0.1" in m.stderr()
                assert until(lambda: _answer(b.port, "y.ixfr.example")[0] == NX), b.log
                column = 1
            yield b, m, column
        finally:
            b.stop()
            assert m.stop() == 0, m.stderr()


def _answer(port: int, name: str) -> tuple[str, list[str]]:
    """(NXDOMAIN | NODATA | upstream | rcode, answer records) of an A query."""
    try:
        r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=3)
    except dns.exception.Timeout:
        return "no answer", []
    answer = sorted(f"{rr.name} {rd}" for rr in r.answer for rd in rr)
    if r.rcode() == dns.rcode.NXDOMAIN:
        return NX, answer
    if r.rcode() == dns.rcode.NOERROR:
        return (UP if answer else NODATA), answer
    return dns.rcode.to_text(r.rcode()), answer


@pytest.mark.parametrize("name", list(CASES))
def test_same_answers_as_bind(peers: tuple[Bind, MamoriProcess, int], name: str) -> None:
    bind, m, column = peers
    theirs = _answer(bind.port, name)
    assert theirs[0] == CASES[name][column], f"BIND answers {theirs}"
    assert _answer(m.port, name) == theirs


def test_no_rule_below_an_owner_is_not_a_hit_either(
    peers: tuple[Bind, MamoriProcess, int],
) -> None:
    """Below pass.nx (PASSTHRU) nothing matches: BIND logs no rewrite, mamori no hit."""
    bind, m, _ = peers
    for port in (bind.port, m.port):
        _answer(port, "pass.nx.example")
        _answer(port, "sub.pass.nx.example")
    assert until(lambda: "rewrite pass.nx.example/A/IN" in bind.log), bind.log
    assert "rpz QNAME PASSTHRU rewrite pass.nx.example/A/IN" in bind.log
    assert "sub.pass.nx.example/A/IN" not in bind.log
    db = m.db

    def hits() -> dict[str, str]:
        with sqlite3.connect(db) as c:
            rows = c.execute("SELECT qname, policy_action FROM query_log").fetchall()
        return {q: a for q, a in rows if q in ("pass.nx.example.", "sub.pass.nx.example.")}

    assert until(lambda: len(hits()) == 2), hits()
    assert hits() == {"pass.nx.example.": "PASSTHRU", "sub.pass.nx.example.": ""}


# ----------------------------------------------------------------- NSDNAME
# BIND decides NSDNAME from the name servers it learns while resolving, so here it is
# a full resolver: one named with three views -- "auth" (a root, test, example.test
# and four child zones; answers BIND's own iterative queries, which come unsigned with
# RD=0), "plain" (recursive, no policy: mamori's upstream) and "rpz" (recursive with
# the policy zone; the test's queries, signed with a TSIG key to select it).
KEY = ("hmac-sha256", "bWFtb3JpLW5zZG5hbWUtdGVzdC0wMTIzNDU2Nzg5YWI=")
NS_OF = {
    "s1": "ns.x.bad.example.test.",  # below the empty non-terminal x.bad
    "s2": "ns.bad.example.test.",  # *.bad applies
    "s3": "x.bad.example.test.",  # the empty non-terminal itself
    "s4": "ns.y.x.bad.example.test.",  # *.y.x.bad applies
}
NSDNAME_POLICY = HEAD.format(serial=1) + (
    "*.bad.example.test.rpz-nsdname CNAME .\n"
    "y.x.bad.example.test.rpz-nsdname CNAME .\n"
    "*.y.x.bad.example.test.rpz-nsdname CNAME .\n"
)
SOA_TEST = "$TTL 300\n@ SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n"


def _auth_zones(d: Path) -> dict[str, str]:
    zones = {
        ".": ". NS ns.test.\ntest. NS ns.test.\nns.test. A 127.0.0.1\n",
        "test": "@ NS ns.test.\nns A 127.0.0.1\nexample NS ns.test.\n",
        "example.test": "@ NS ns.test.\n"
        + "".join(f"{s} NS {ns}\n{ns} A 127.0.0.1\n" for s, ns in NS_OF.items()),
    }
    zones |= {f"{s}.example.test": f"@ NS {ns}\nwww A 192.0.2.1\n" for s, ns in NS_OF.items()}
    for name, body in zones.items():
        (d / f"{name}.db").write_text(f"$ORIGIN {name.rstrip('.')}.\n" + SOA_TEST + body)
    return {name: str(d / f"{name}.db") for name in zones}


@pytest.fixture(scope="module")
def nsdname_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bind, MamoriProcess]]:
    tmp = tmp_path_factory.mktemp("bind-nsdname")
    d = tmp / "bind"
    b = Bind(require_binary("named"), d, "", keys={"rpz-view": KEY})
    files = _auth_zones(d)
    (d / "hints").write_text(". 300 NS ns.test.\nns.test. 300 A 127.0.0.1\n")
    (d / "rpz.test.zone").write_text(NSDNAME_POLICY)
    hint = f'zone "." {{ type hint; file "{d}/hints"; }};'
    auth = "".join(f'zone "{n}" {{ type primary; file "{f}"; }};\n' for n, f in files.items())
    b.options = f"port {b.port}; notify no;"
    b.zones = (
        'view "rpz" { match-clients { key "rpz-view"; }; recursion yes;'
        ' response-policy { zone "rpz.test"; };\n'
        f'  {hint}\n  zone "rpz.test" {{ type primary; file "{d}/rpz.test.zone"; }};\n}};\n'
        f'view "plain" {{ match-recursive-only yes; recursion yes; {hint} }};\n'
        f'view "auth" {{ recursion no;\n{auth}}};\n'
    )
    (tmp / "m").mkdir()
    (tmp / "policy.rpz").write_text(NSDNAME_POLICY)
    m = MamoriProcess(
        tmp / "m",
        [f"127.0.0.1:{b.port}"],
        extra=f'[[rpz]]\nname = "rpz.test"\nfile = "{tmp / "policy.rpz"}"\n',
        upstream_timeout=2.0,
    )
    b.start()
    try:
        m.start()
        yield b, m
    finally:
        b.stop()
        assert m.stop() == 0, m.stderr()


def _signed_answer(port: int, name: str) -> str:
    q = dns.message.make_query(name, "A")
    q.use_tsig(dns.tsigkeyring.from_text({"rpz-view": KEY}), keyname="rpz-view")
    r = dns.query.udp(q, "127.0.0.1", port=port, timeout=5)
    if r.rcode() == dns.rcode.NXDOMAIN:
        return NX
    return UP if r.rcode() == dns.rcode.NOERROR and r.answer else dns.rcode.to_text(r.rcode())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.s1.example.test", UP),
        ("www.s2.example.test", NX),
        ("www.s3.example.test", UP),
        ("www.s4.example.test", NX),
    ],
)
def test_nsdname_wildcards_stop_at_names_of_the_zone_as_in_bind(
    nsdname_peers: tuple[Bind, MamoriProcess], name: str, expected: str
) -> None:
    bind, m = nsdname_peers
    assert _signed_answer(bind.port, name) == expected, bind.log
    assert _answer(m.port, name)[0] == expected, m.stderr()
