"""Discovery of Designated Resolvers (DDR, RFC 9462): ``_dns.resolver.arpa`` SVCB.

A client that starts on port 53 asks ``_dns.resolver.arpa`` type SVCB (RFC
9460) and learns our encrypted endpoints: one ServiceMode record per
configured transport, in the order DoT, DoH, DoQ (SvcPriority 1, 2, 3), each
with TargetName ``[tls] server_name`` and the keys RFC 9461 (DoT, DoH) and
RFC 9250 (DoQ) define:

- DoT: ``alpn="dot"``, ``port`` (first ``[server] dot`` address);
- DoH: ``alpn="h2"``, ``port``, ``dohpath="/dns-query{?dns}"``;
- DoQ: ``alpn="doq"``, ``port``;

plus ``ipv4hint`` / ``ipv6hint`` with the transport's concrete listening
addresses (not 0.0.0.0 / ::). Without a ``server_name`` or an encrypted
listener the answer is empty (NODATA): the client stays on port 53.

The records are built once per configuration (wire bytes), answered locally
by the pipeline's stage 3 (special.py), never forwarded or cached.
No dnspython (the tests check the records with it).
"""

from __future__ import annotations

import ipaddress
import struct

from mamori.config import Config, Endpoint
from mamori.dnsutil import wire

TYPE_SVCB = 64
QTYPE_SVCB = b"\x00\x40"
DDR_NAME = wire.text_to_name("_dns.resolver.arpa")  # lowercase wire form
DDR_TTL = 300
DOH_PATH = "/dns-query{?dns}"

# SvcParamKeys (RFC 9460 section 14.3.2; dohpath: RFC 9461)
KEY_ALPN, KEY_PORT, KEY_IPV4HINT, KEY_IPV6HINT, KEY_DOHPATH = 1, 3, 4, 6, 7


def _param(key: int, value: bytes) -> bytes:
    return struct.pack("!HH", key, len(value)) + value


def _hints(endpoints: tuple[Endpoint, ...]) -> bytes:
    """ipv4hint and ipv6hint params of the concrete addresses (unspecified ones left out)."""
    v4: list[bytes] = []
    v6: list[bytes] = []
    for ep in endpoints:
        addr = ipaddress.ip_address(ep.host.split("%", maxsplit=1)[0])
        if addr.is_unspecified:
            continue
        (v4 if addr.version == 4 else v6).append(addr.packed)
    v4 = list(dict.fromkeys(v4))
    v6 = list(dict.fromkeys(v6))
    out = b""
    if v4:
        out += _param(KEY_IPV4HINT, b"".join(v4))
    if v6:
        out += _param(KEY_IPV6HINT, b"".join(v6))
    return out


def svcb_rdata(
    priority: int, target: str, alpn: str, endpoints: tuple[Endpoint, ...], dohpath: str = ""
) -> bytes:
    """One ServiceMode SVCB rdata (RFC 9460 section 2.2), keys in increasing order."""
    alpn_id = alpn.encode()
    params = _param(KEY_ALPN, bytes([len(alpn_id)]) + alpn_id)
    params += _param(KEY_PORT, struct.pack("!H", endpoints[0].port))
    params += _hints(endpoints)
    if dohpath:
        params += _param(KEY_DOHPATH, dohpath.encode())
    return struct.pack("!H", priority) + wire.text_to_name(target) + params


def ddr_records(cfg: Config) -> list[bytes]:
    """The answer records (wire, owner compressed to the question) for *cfg*; [] when
    DDR has nothing to announce (no ``server_name`` or no encrypted listener)."""
    name = cfg.tls.server_name
    s = cfg.server
    if not name:
        return []
    rdatas = []
    if s.dot:
        rdatas.append(svcb_rdata(1, name, "dot", s.dot))
    if s.doh:
        rdatas.append(svcb_rdata(2, name, "h2", s.doh, DOH_PATH))
    if s.doq:
        rdatas.append(svcb_rdata(3, name, "doq", s.doq))
    # owner: a pointer to the question's name at offset 12
    return [
        b"\xc0\x0c" + struct.pack("!HHIH", TYPE_SVCB, 1, DDR_TTL, len(rd)) + rd for rd in rdatas
    ]


def ddr_summary(cfg: Config) -> str:
    """The DDR answer as the query log's ``answer`` column shows it."""
    if not cfg.tls.server_name:
        return ""
    s = cfg.server
    alpns = [
        (i, a) for i, a, eps in ((1, "dot", s.dot), (2, "h2", s.doh), (3, "doq", s.doq)) if eps
    ]
    return ";".join(f"SVCB {i} {cfg.tls.server_name}. alpn={a}" for i, a in alpns)


def ddr_answer(data: bytes, qend: int, records: list[bytes], opt: bytes) -> bytes:
    """The answer to the DDR query *data* (question ending at *qend*): RD copied, QR, AA,
    RA; *records* in the answer section; *opt* (an OPT record, or b"") in the additional."""
    flags = wire.QR | wire.AA | wire.RA | (wire.RD if data[2] & 1 else 0)
    if data[3] & 0x10:
        flags |= wire.CD
    header = data[:2] + struct.pack("!HHHHH", flags, 1, len(records), 0, 1 if opt else 0)
    return header + data[12:qend] + b"".join(records) + opt
