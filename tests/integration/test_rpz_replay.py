"""Replay of Unbound's RPZ scenarios (../shared/data/rpz/unbound/testdata/rpz_*.rpl).

Adapted to a forwarder: every scripted upstream answer (RANGE/ENTRY) is served
by one local fixture that mamori forwards to; the scenario's rpz: zones become
[[rpz]] zones; each STEP QUERY is sent to mamori from 127.0.0.1 and checked
against its CHECK_ANSWER on rcode, TC and the answer section (owner, type,
rdata; TTLs, AA/RA and the authority section are not compared: mamori adds
the policy SOA as BIND does, Unbound does not).

Scenarios that need what a forwarder or this harness cannot do are skipped
with the reason (SKIPPED below, also in docs/reference/rpz.md). Steps where
mamori knowingly differs are listed in KNOWN: they must keep failing, so a
fix (or a regression elsewhere) shows up as a test failure to update here.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support import rpl
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared/data/rpz/unbound/testdata"

SKIPPED = {
    "rpz_axfr.rpl": "zone transfer (zone-transfer issue) and simulated time",
    "rpz_ixfr.rpl": "zone transfer (zone-transfer issue) and simulated time",
    "rpz_cached_cname.rpl": "simulated time (TIME_PASSES)",
    "rpz_respip.rpl": "simulated time (TIME_PASSES)",
    "rpz_respip_override.rpl": "simulated time (TIME_PASSES)",
    "rpz_cname_tag.rpl": "Unbound tags (no equivalent)",
    "rpz_clientip_passthru_dns64.rpl": "DNS64 module (not a mamori feature)",
    "rpz_val_block.rpl": "DNSSEC validator module",
    "rpz_signal_nxdomain_ra.rpl": "Unbound-specific option rpz-signal-nxdomain-ra",
    "rpz_qname_override.rpl": "zones without SOA, NS and TTLs (Unbound accepts them; mamori,"
    " like BIND, refuses such zone files)",
}

# (scenario, CHECK_ANSWER step): why mamori answers differently.
CHAIN = "names after an upstream CNAME are not checked against QNAME rules yet"
KNOWN: dict[tuple[str, int], str] = {
    ("rpz_qname.rpl", 11): "two CNAMEs at one owner (a CNAME . / a CNAME *.): dnspython keeps the"
    " last (NODATA), Unbound the first (NXDOMAIN)",
    ("rpz_qname.rpl", 71): "x.b.a with rules *.a and b.a: mamori applies *.a (closest wildcard);"
    " Unbound uses DNS closest-encloser semantics, where the node b.a hides *.a",
}


class ScriptedUpstream:
    """Answers from a scenario's RANGE entries (matched on qname and qtype)."""

    def __init__(self, entries: list[rpl.Entry]) -> None:
        self.entries = entries
        self.port = free_port()

    def answer(self, wire: bytes) -> bytes | None:
        q = dns.message.from_wire(wire)
        qname, qtype = q.question[0].name, q.question[0].rdtype
        matching = [
            e
            for e in self.entries
            if e.question()[0] == qname and ("qtype" not in e.match or e.question()[1] == qtype)
        ]
        # A forwarder's upstream resolves: prefer a final answer to a referral
        # from a parent zone's server (both can match one question in a scenario).
        matching.sort(key=lambda e: 0 if _final(e, qname, qtype) else 1)
        for e in matching[:1]:
            r = dns.message.make_response(q)
            r.flags &= ~dns.flags.AA
            for f in e.flags:
                if f in ("AA", "TC"):
                    r.flags |= dns.flags.from_text(f)
            r.set_rcode(dns.rcode.from_text(e.rcode))
            for name, section in (
                ("ANSWER", r.answer),
                ("AUTHORITY", r.authority),
                ("ADDITIONAL", r.additional),
            ):
                section.extend(e.sections.get(name, []))
            return r.to_wire()
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.REFUSED)
        return r.to_wire()

    def __enter__(self) -> ScriptedUpstream:
        outer = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                resp = outer.answer(data)
                if resp is not None:
                    sock.sendto(resp, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(5)
                try:
                    ln = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
                    resp = outer.answer(conn.recv(ln, socket.MSG_WAITALL))
                    if resp is not None:
                        conn.sendall(struct.pack("!H", len(resp)) + resp)
                except (OSError, struct.error):
                    return

        socketserver.ThreadingUDPServer.allow_reuse_address = True
        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.servers: list[socketserver.BaseServer] = [
            socketserver.ThreadingUDPServer(("127.0.0.1", self.port), Udp),
            socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Tcp),
        ]
        for srv in self.servers:
            srv.daemon_threads = True  # type: ignore[attr-defined]
            threading.Thread(
                target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()


def _final(e: rpl.Entry, qname: dns.name.Name, qtype: int) -> bool:
    """Is this entry an answer (data, CNAME, negative) rather than a referral?"""
    if e.rcode != "NOERROR" or e.sections.get("ANSWER"):
        return True
    auth = e.sections.get("AUTHORITY", [])
    if any(r.rdtype == dns.rdatatype.SOA for r in auth):
        return True
    return qtype == dns.rdatatype.NS and any(
        r.rdtype == dns.rdatatype.NS and r.name == qname for r in auth
    )


def _policy(options: dict[str, str]) -> str:
    action = options.get("rpz-action-override", "given")
    if action == "cname":
        return "cname:" + options.get("rpz-cname-override", ".")
    return action


def _scenarios() -> list[str]:
    return sorted(p.name for p in DATA.glob("rpz_*.rpl")) if DATA.exists() else []


def _answer_view(m: dns.message.Message | None) -> tuple[object, ...]:
    if m is None:
        return ("no answer",)
    rrs = sorted(
        f"{rrset.name.to_text().lower()} {rrset.rdtype} {rd.to_text()}"
        for rrset in m.answer
        for rd in rrset
    )
    return (dns.rcode.to_text(m.rcode()), bool(m.flags & dns.flags.TC), rrs)


def _expected_view(e: rpl.Entry) -> tuple[object, ...]:
    rrs = sorted(
        f"{rrset.name.to_text().lower()} {rrset.rdtype} {rd.to_text()}"
        for rrset in e.sections.get("ANSWER", [])
        for rd in rrset
    )
    return (e.rcode, "TC" in e.flags, rrs)


@pytest.fixture(params=_scenarios() or ["(none)"])
def scenario(request: pytest.FixtureRequest) -> Iterator[rpl.Scenario]:
    name = request.param
    if name == "(none)":
        pytest.skip("shared data not present")
    if name in SKIPPED:
        pytest.skip(SKIPPED[name])
    sc = rpl.parse(DATA / name)
    if any(s.address and not s.address.startswith("127.") for s in sc.steps):
        pytest.skip("queries from non-loopback client addresses (tests stay on 127.0.0.1)")
    yield sc


def test_replay_unbound_rpz_scenario(scenario: rpl.Scenario, tmp_path: Path) -> None:
    extra = []
    for i, z in enumerate(scenario.rpz):
        f = tmp_path / f"zone{i}.rpz"
        f.write_text(z.text)
        name = z.name.rstrip(".")
        extra.append(f'[[rpz]]\nname = "{name}"\nfile = "{f}"\npolicy = "{_policy(z.options)}"\n')
    results: dict[int, tuple[tuple[object, ...], tuple[object, ...]]] = {}
    with ScriptedUpstream(scenario.upstream) as upstream:
        m = MamoriProcess(tmp_path, [f"127.0.0.1:{upstream.port}"], extra="\n".join(extra)).start()
        try:
            last: dns.message.Message | None = None
            for step in scenario.steps:
                assert step.entry is not None
                if step.kind == "QUERY":
                    qname, qtype = step.entry.question()
                    q = dns.message.make_query(qname, qtype, use_edns=False)
                    query = dns.query.tcp if "TCP" in step.entry.match else dns.query.udp
                    try:
                        last = query(q, "127.0.0.1", port=m.port, timeout=2)
                    except dns.exception.Timeout:
                        last = None
                elif step.kind == "CHECK_ANSWER":
                    results[step.number] = (_answer_view(last), _expected_view(step.entry))
        finally:
            assert m.stop() == 0, m.stderr()
    name = scenario.path.name
    failing = {n: r for n, r in results.items() if r[0] != r[1]}
    known = {n for (s, n) in KNOWN if s == name}
    assert results, "the scenario has checks"
    unexpected = {n: failing[n] for n in failing if n not in known}
    fixed = sorted(known - set(failing))
    assert not unexpected, f"{name}: steps differ from Unbound (got, expected): {unexpected}"
    assert not fixed, f"{name}: steps listed in KNOWN now pass, update KNOWN: {fixed}"
