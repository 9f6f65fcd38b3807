"""Running an Unbound RPZ scenario against mamori (see tests/integration/test_rpz_replay.py).

``python -m tests.support.replay SCENARIO.rpl WORKDIR`` runs one scenario and
prints the results as JSON: the replay test starts it inside a network
namespace for scenarios whose queries come from non-loopback addresses.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from tests.support import rpl
from tests.support.mamori_proc import MamoriProcess
from tests.support.net import free_port

View = tuple[object, ...]
Results = dict[int, tuple[View, View]]


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
        matching.sort(key=lambda e: 0 if final(e, qname, qtype) else 1)
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


def final(e: rpl.Entry, qname: dns.name.Name, qtype: int) -> bool:
    """Is this entry an answer (data, CNAME, negative) rather than a referral?"""
    if e.rcode != "NOERROR" or e.sections.get("ANSWER"):
        return True
    auth = e.sections.get("AUTHORITY", [])
    if any(r.rdtype == dns.rdatatype.SOA for r in auth):
        return True
    return qtype == dns.rdatatype.NS and any(
        r.rdtype == dns.rdatatype.NS and r.name == qname for r in auth
    )


def zone_policy(options: dict[str, str]) -> str:
    action = options.get("rpz-action-override", "given")
    if action == "cname":
        return "cname:" + options.get("rpz-cname-override", ".")
    return action


def answer_view(m: dns.message.Message | None) -> tuple[object, ...]:
    if m is None:
        return ("no answer",)
    rrs = sorted(
        f"{rrset.name.to_text().lower()} {rrset.rdtype} {rd.to_text()}"
        for rrset in m.answer
        for rd in rrset
    )
    return (dns.rcode.to_text(m.rcode()), bool(m.flags & dns.flags.TC), rrs)


def expected_view(e: rpl.Entry) -> tuple[object, ...]:
    rrs = sorted(
        f"{rrset.name.to_text().lower()} {rrset.rdtype} {rd.to_text()}"
        for rrset in e.sections.get("ANSWER", [])
        for rd in rrset
    )
    return (e.rcode, "TC" in e.flags, rrs)


def run(scenario: rpl.Scenario, workdir: Path) -> Results:
    """Run *scenario*: scripted upstream, mamori with its zones, the query steps."""
    extra = []
    for i, z in enumerate(scenario.rpz):
        f = workdir / f"zone{i}.rpz"
        f.write_text(z.text)
        name = z.name.rstrip(".")
        policy = zone_policy(z.options)
        extra.append(f'[[rpz]]\nname = "{name}"\nfile = "{f}"\npolicy = "{policy}"\n')
    allow = ["127.0.0.0/8", "::1"]
    acl = scenario.server.get("access-control", "").split()
    if len(acl) == 2 and acl[1] == "allow":
        allow.append(acl[0])
    results: Results = {}
    with ScriptedUpstream(scenario.upstream) as upstream:
        m = MamoriProcess(
            workdir, [f"127.0.0.1:{upstream.port}"], extra="\n".join(extra), allow=allow
        ).start()
        try:
            last: dns.message.Message | None = None
            for step in scenario.steps:
                assert step.entry is not None
                if step.kind == "QUERY":
                    qname, qtype = step.entry.question()
                    q = dns.message.make_query(qname, qtype, use_edns=False)
                    query = dns.query.tcp if "TCP" in step.entry.match else dns.query.udp
                    try:
                        last = query(q, "127.0.0.1", port=m.port, timeout=2, source=step.address)
                    except dns.exception.Timeout:
                        last = None
                elif step.kind == "CHECK_ANSWER":
                    results[step.number] = (answer_view(last), expected_view(step.entry))
        finally:
            assert m.stop() == 0, m.stderr()
    return results


def main() -> None:
    scenario = rpl.parse(Path(sys.argv[1]))
    results = run(scenario, Path(sys.argv[2]))
    json.dump({str(n): [list(g), list(e)] for n, (g, e) in results.items()}, sys.stdout)


if __name__ == "__main__":
    main()
