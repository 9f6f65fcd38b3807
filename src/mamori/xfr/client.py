"""Zone transfer client: SOA serial checks, AXFR (RFC 5936) and IXFR (RFC 1995), TSIG.

The transfer is read over TCP with asyncio and parsed message by message with
dnspython (TSIG verified over the whole multi-message stream, RFC 8945).
The result is either the whole zone, a list of deltas, or "up to date": the
caller decides how to apply it. Nothing here touches the running policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from mamori.config import Endpoint, TsigSpec
from mamori.xfr.tsig import keyring

RR = tuple[dns.name.Name, int, dns.rdata.Rdata]  # owner, TTL, rdata
MESSAGE_TIMEOUT = 30.0  # seconds to wait for each message of a transfer
MAX_TRANSFER_TIME = 600.0


class TransferError(Exception):
    """A transfer that failed or was refused; the message says why."""


@dataclass
class FullZone:
    """An AXFR (or an IXFR answered in AXFR form): every record, SOA first."""

    serial: int
    records: list[RR]


@dataclass
class Delta:
    """One IXFR difference sequence: from *old* to *new* serial."""

    old: int
    new: int
    deleted: list[RR] = field(default_factory=list)
    added: list[RR] = field(default_factory=list)


@dataclass
class Incremental:
    serial: int
    deltas: list[Delta]


def _signed(msg: dns.message.Message, key: TsigSpec | None) -> dns.message.Message:
    if key is not None:
        ring, name = keyring(key)
        msg.use_tsig(ring, name)
    return msg


async def soa_serial(
    primary: Endpoint, zone: dns.name.Name, key: TsigSpec | None, timeout: float = 5.0
) -> int:
    """The zone's SOA serial at *primary* (UDP, then TCP if truncated)."""
    q = _signed(dns.message.make_query(zone, dns.rdatatype.SOA), key)
    try:
        r = await dns.asyncquery.udp(q, primary.host, port=primary.port, timeout=timeout)
        if r.flags & dns.flags.TC:
            r = await dns.asyncquery.tcp(q, primary.host, port=primary.port, timeout=timeout)
    except dns.tsig.PeerError as e:
        raise TransferError(f"TSIG error from {primary}: {e}") from e
    except (dns.exception.DNSException, OSError) as e:
        raise TransferError(f"SOA query to {primary} failed: {e}") from e
    _check_reply(r, key, primary)
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA and rrset.name == zone:
            return int(rrset[0].serial)
    raise TransferError(f"{primary} has no SOA for {zone} (rcode {dns.rcode.to_text(r.rcode())})")


def _check_reply(r: dns.message.Message, key: TsigSpec | None, primary: Endpoint) -> None:
    if r.rcode() != dns.rcode.NOERROR:
        raise TransferError(f"{primary} answered {dns.rcode.to_text(r.rcode())}")
    if key is not None and not r.had_tsig:
        raise TransferError(f"{primary} answered without TSIG (key {key})")


async def transfer(
    primary: Endpoint,
    zone: dns.name.Name,
    serial: int | None,
    key: TsigSpec | None,
) -> FullZone | Incremental | None:
    """AXFR (serial None) or IXFR from *serial*; None when already up to date."""
    try:
        return await asyncio.wait_for(_transfer(primary, zone, serial, key), MAX_TRANSFER_TIME)
    except TimeoutError as e:
        raise TransferError(f"transfer from {primary} timed out") from e


async def _transfer(
    primary: Endpoint, zone: dns.name.Name, serial: int | None, key: TsigSpec | None
) -> FullZone | Incremental | None:
    ixfr = serial is not None
    q = dns.message.make_query(zone, dns.rdatatype.IXFR if ixfr else dns.rdatatype.AXFR)
    if ixfr:
        soa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, f". . {serial} 0 0 0 0")
        q.authority.append(dns.rrset.from_rdata(zone, 0, soa))
    _signed(q, key)
    wire = q.to_wire()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(primary.host, primary.port), MESSAGE_TIMEOUT
        )
    except (OSError, TimeoutError) as e:
        raise TransferError(f"cannot connect to {primary}: {e}") from e
    rrs: list[RR] = []
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        tsig_ctx = None
        first = True
        soa_count = 0
        final: int | None = None
        while True:
            try:
                head = await asyncio.wait_for(reader.readexactly(2), MESSAGE_TIMEOUT)
                data = await asyncio.wait_for(
                    reader.readexactly(struct.unpack("!H", head)[0]), MESSAGE_TIMEOUT
                )
            except asyncio.IncompleteReadError as e:
                raise TransferError(
                    f"{primary} closed the connection mid-transfer ({len(rrs)} records read)"
                ) from e
            except TimeoutError as e:
                raise TransferError(f"{primary} stopped sending ({len(rrs)} records read)") from e
            try:
                r = dns.message.from_wire(
                    data,
                    keyring=q.keyring,
                    request_mac=q.mac,
                    xfr=True,
                    origin=None,
                    tsig_ctx=tsig_ctx,
                    multi=not first,
                    one_rr_per_rrset=True,
                )
            except dns.tsig.PeerError as e:
                raise TransferError(f"TSIG error from {primary}: {e}") from e
            except (dns.exception.DNSException, ValueError) as e:
                raise TransferError(f"malformed transfer message from {primary}: {e}") from e
            if not q.is_response(r, xfr_continuation=not first):
                raise TransferError(f"{primary} sent a message that does not answer ours")
            if first:
                _check_reply(r, key, primary)
            first = False
            tsig_ctx = r.tsig_ctx
            for rrset in r.answer:
                for rd in rrset:
                    rrs.append((rrset.name, rrset.ttl, rd))
                    if rd.rdtype == dns.rdatatype.SOA and rrset.name == zone:
                        soa_count += 1
                        if final is None:
                            final = int(rd.serial)
            if not rrs or rrs[0][2].rdtype != dns.rdatatype.SOA:
                raise TransferError(f"{primary}: transfer does not start with the zone's SOA")
            up_to_date = final is not None and serial is not None and _serial_le(final, serial)
            if ixfr and len(rrs) == 1 and up_to_date:
                return None  # RFC 1995 4: one SOA = up to date
            if len(rrs) > 1 and soa_count >= 2 and _ended(rrs, final, ixfr):
                break
        if key is not None and not r.had_tsig:
            raise TransferError(f"{primary}: the last transfer message is not signed")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert final is not None
    return _interpret(rrs, final, primary)


def _ended(rrs: list[RR], final: int | None, ixfr: bool) -> bool:
    """Has the stream reached its closing SOA?"""
    last = rrs[-1][2]
    if last.rdtype != dns.rdatatype.SOA or int(last.serial) != final:  # type: ignore[attr-defined]
        return False
    if not ixfr or rrs[1][2].rdtype != dns.rdatatype.SOA:
        return True  # AXFR form: SOA ... SOA
    # IXFR form: SOA(new) [SOA(old) ... SOA(newer) ...]+ SOA(new): the closing SOA
    # is the one that follows an addition block, i.e. the count of SOAs is even.
    soas = sum(1 for r in rrs if r[2].rdtype == dns.rdatatype.SOA and r[0] == rrs[0][0])
    return soas >= 4 and soas % 2 == 0


def _interpret(rrs: list[RR], final: int, primary: Endpoint) -> FullZone | Incremental:
    apex = rrs[0][0]
    if rrs[1][2].rdtype != dns.rdatatype.SOA or rrs[1][0] != apex:
        return FullZone(final, rrs[:-1])  # AXFR form
    deltas: list[Delta] = []
    body = rrs[1:-1]
    i = 0
    while i < len(body):
        name, _ttl, rd = body[i]
        if rd.rdtype != dns.rdatatype.SOA or name != apex:
            raise TransferError(f"{primary}: malformed IXFR (expected an SOA at record {i + 2})")
        delta = Delta(int(rd.serial), 0)  # type: ignore[attr-defined]
        delta.deleted.append(body[i])
        i += 1
        while i < len(body) and not (body[i][2].rdtype == dns.rdatatype.SOA and body[i][0] == apex):
            delta.deleted.append(body[i])
            i += 1
        if i >= len(body):
            raise TransferError(f"{primary}: malformed IXFR (deletions without additions)")
        delta.new = int(body[i][2].serial)  # type: ignore[attr-defined]
        delta.added.append(body[i])
        i += 1
        while i < len(body) and not (body[i][2].rdtype == dns.rdatatype.SOA and body[i][0] == apex):
            delta.added.append(body[i])
            i += 1
        deltas.append(delta)
    if not deltas or deltas[-1].new != final:
        raise TransferError(f"{primary}: malformed IXFR (does not end at serial {final})")
    return Incremental(final, deltas)


def _serial_le(a: int, b: int) -> bool:
    """RFC 1982 serial arithmetic: a <= b."""
    return a == b or ((b - a) % (1 << 32)) < (1 << 31)
