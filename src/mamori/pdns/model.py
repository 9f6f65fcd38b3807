"""Observations: what a DNS answer says, one resource record at a time.

An observation is (rrname, rrtype, rdata, bailiwick, time, sensor). Names are
lowercase presentation form with the final dot; rdata is dnspython's
presentation form (RFC 3597 ``\\# LEN HEX`` for unknown types). The answer
and authority sections are kept (not the additional section: glue cannot be
trusted without bailiwick checks). Who asked is never part of it.
"""

from __future__ import annotations

from typing import NamedTuple

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from mamori.store.pdns_keys import NAME_RDATA, rdata_name

SKIP_TYPES = {dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY}


class Observation(NamedTuple):
    rrname: str
    rrtype: int
    rdata: str
    bailiwick: str
    time: int
    sensor: str


class Nxdomain(NamedTuple):
    rrname: str
    rrtype: int
    time: int
    sensor: str


def from_message(
    msg: dns.message.Message, when: int, sensor: str, bailiwick: str = ""
) -> tuple[list[Observation], Nxdomain | None]:
    """The observations of a response (and its NXDOMAIN, if it is one)."""
    out: list[Observation] = []
    for section in (msg.answer, msg.authority):
        for rrset in section:
            if rrset.rdtype in SKIP_TYPES or rrset.rdclass != 1:
                continue
            owner = rrset.name.to_text().lower()
            for rd in rrset:
                out.append(Observation(owner, rrset.rdtype, rd.to_text(), bailiwick, when, sensor))
    nx = None
    if msg.rcode() == dns.rcode.NXDOMAIN and msg.question:
        q = msg.question[0]
        nx = Nxdomain(q.name.to_text().lower(), q.rdtype, when, sensor)
    return out, nx


def from_wire_dnspython(
    data: bytes, when: int, sensor: str
) -> tuple[list[Observation], Nxdomain | None]:
    """``from_wire`` with dnspython only (every type, every name)."""
    try:
        msg = dns.message.from_wire(data, ignore_trailing=True, one_rr_per_rrset=False)
    except (dns.exception.DNSException, ValueError, IndexError) as e:
        raise ValueError(f"malformed DNS message: {e}") from e
    if not msg.flags & dns.flags.QR:
        raise ValueError("not a response")
    return from_message(msg, when, sensor)


def type_text(rrtype: int) -> str:
    try:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rrtype))
    except ValueError:
        return f"TYPE{rrtype}"


def type_code(text: str) -> int:
    """``A`` / ``aaaa`` / ``TYPE65`` -> code; ValueError for an unknown mnemonic."""
    try:
        return int(dns.rdatatype.from_text(text.upper()))
    except dns.rdatatype.UnknownRdatatype as e:
        raise ValueError(f"unknown rrtype {text!r}") from e


__all__ = ["NAME_RDATA", "Nxdomain", "Observation", "rdata_name"]
