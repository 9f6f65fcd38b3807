"""Encrypted queries go through the same pipeline as port 53: the ACL ([server] allow)
refuses clients outside it, and every query lands in the query log."""

from __future__ import annotations

import socket
import sqlite3
import ssl
import struct

import dns.edns
import dns.message
import dns.rcode
import pytest

from tests.encrypted.certs import SERVER_NAME
from tests.encrypted.conftest import Service
from tests.encrypted.doqclient import query as doq_query
from tests.support.wait import until

pytestmark = pytest.mark.integration


def _dot(svc: Service, name: str, source: str = "127.0.0.1") -> dns.message.Message:
    ctx = ssl.create_default_context(cafile=str(svc.pki.ca))
    raw = socket.create_connection(("127.0.0.1", svc.dot), timeout=5, source_address=(source, 0))
    with ctx.wrap_socket(raw, server_hostname=SERVER_NAME) as s:
        q = dns.message.make_query(name, "A", use_edns=0).to_wire()
        s.sendall(struct.pack("!H", len(q)) + q)
        head = s.recv(2)
        (n,) = struct.unpack("!H", head)
        body = b""
        while len(body) < n:
            body += s.recv(n - len(body))
    return dns.message.from_wire(body)


def test_client_outside_allow_is_refused_over_dot(service: Service) -> None:
    r = _dot(service, "www.example.test", source="127.0.0.2")  # allow: 127.0.0.1/32, ::1
    assert r.rcode() == dns.rcode.REFUSED
    assert [o.code for o in r.options if o.otype == dns.edns.EDE] == [18]  # Prohibited


def test_encrypted_queries_are_in_the_query_log(service: Service) -> None:
    assert _dot(service, "ns1.example.test").answer
    q = dns.message.make_query("ns1.example.test", "AAAA")
    q.id = 0
    doq_query(service.doq, service.pki.ca, SERVER_NAME, q.to_wire())

    def logged() -> set[int]:
        with sqlite3.connect(service.mamori.db) as db:
            rows = db.execute(
                "SELECT qtype FROM query_log WHERE qname = 'ns1.example.test.'"
                " AND transport = 'tcp' AND client = '127.0.0.1'"
            ).fetchall()
        return {r[0] for r in rows}

    assert until(lambda: {1, 28} <= logged(), 10)
