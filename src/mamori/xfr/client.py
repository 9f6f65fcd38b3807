"""Zone transfer client: SOA serial checks, AXFR (RFC 5936) and IXFR (RFC 1995), TSIG.

The transfer is read over TCP with asyncio and parsed message by message with
dnspython (TSIG verified over the whole multi-message stream, RFC 8945).
The result is either the whole zone, a list of deltas, or "up to date": the
caller decides how to apply it. Nothing here touches the running policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from mamori.dnsutil import serial as rfc1982
from mamori.xfr import wireparse
from mamori.xfr.tsig import keyring

RR = tuple[dns.name.Name, int, dns.rdata.Rdata]  # owner, TTL, rdata
MESSAGE_TIMEOUT = 30.0  # seconds to wait for each message of a transfer
MAX_TRANSFER_TIME = 600.0


class TransferError(Exception):
    """A transfer that failed or was refused; the message says why."""


@dataclass
class FullZone:
    """An AXFR (or an IXFR answered in AXFR form), written to a spool file as it came."""

    serial: int
    path: Path  # master file: $ORIGIN, then one record per line, SOA first
    count: int  # records (the closing SOA not counted)


@dataclass
class Delta:
    """One IXFR difference sequence: from *old* to *new* serial."""

    old: int
    new: int
    deleted: list[RR] = field(default_factory=list)
    added: list[RR] = field(default_factory=list)
    # The same records as master-file lines, as received (for the journal)
    deleted_text: list[str] = field(default_factory=list)
    added_text: list[str] = field(default_factory=list)


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
    spool: Path | None = None,
) -> FullZone | Incremental | None:
    """AXFR (serial None) or IXFR from *serial*; None when already up to date.

    A zone coming in AXFR form is written to *spool* record by record.
    """
    try:
        return await asyncio.wait_for(
            _transfer(primary, zone, serial, key, spool), MAX_TRANSFER_TIME
        )
    except TimeoutError as e:
        raise TransferError(f"transfer from {primary} timed out") from e


async def _transfer(
    primary: Endpoint,
    zone: dns.name.Name,
    serial: int | None,
    key: TsigSpec | None,
    spool: Path | None,
) -> FullZone | Incremental | None:
    ixfr = serial is not None
    q = dns.message.make_query(zone, dns.rdatatype.IXFR if ixfr else dns.rdatatype.AXFR)
    if ixfr:
        soa = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, f". . {serial} 0 0 0 0")
        q.authority.append(dns.rrset.from_rdata(zone, 0, soa))
    _signed(q, key)
    wire = q.to_wire()
    tsig_key = keyring(key)[0][dns.name.from_text(key.name)] if key is not None else None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(primary.host, primary.port), MESSAGE_TIMEOUT
        )
    except (OSError, TimeoutError) as e:
        raise TransferError(f"cannot connect to {primary}: {e}") from e
    apex = zone.to_text().lower()
    spool = spool or Path(tempfile.gettempdir()) / f"mamori-xfr-{os.getpid()}-{q.id}.zone"
    stream = _Stream(apex, ixfr, spool)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        ctx = None
        first = True
        while True:
            try:
                head = await asyncio.wait_for(reader.readexactly(2), MESSAGE_TIMEOUT)
                data = await asyncio.wait_for(
                    reader.readexactly(struct.unpack("!H", head)[0]), MESSAGE_TIMEOUT
                )
            except asyncio.IncompleteReadError as e:
                raise TransferError(
                    f"{primary} closed the connection mid-transfer ({stream.count} records read)"
                ) from e
            except TimeoutError as e:
                raise TransferError(
                    f"{primary} stopped sending ({stream.count} records read)"
                ) from e
            try:
                parsed = wireparse.parse(data)
                if tsig_key is not None:
                    ctx = wireparse.verify_tsig(data, parsed, tsig_key, q.mac or b"", ctx, first)
            except dns.tsig.PeerError as e:
                raise TransferError(f"TSIG error from {primary}: {e}") from e
            except (dns.exception.DNSException, wireparse.WireFormatError, ValueError) as e:
                raise TransferError(f"malformed transfer message from {primary}: {e}") from e
            if parsed.msg_id != q.id or not parsed.flags & dns.flags.QR:
                raise TransferError(f"{primary} sent a message that does not answer ours")
            if parsed.rcode != dns.rcode.NOERROR:
                rcode = dns.rcode.to_text(dns.rcode.Rcode(parsed.rcode))
                raise TransferError(f"{primary} answered {rcode}")
            if first and key is not None and parsed.tsig is None:
                raise TransferError(f"{primary} answered without TSIG (key {key})")
            first = False
            stream.add(parsed.records, primary)
            if stream.up_to_date(serial):
                stream.discard()
                return None
            if stream.done:
                break
            await asyncio.sleep(0)  # a long transfer must not hold the loop
    except BaseException:
        stream.discard()
        raise
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return await stream.result(primary)


class _Stream:
    """The records of a transfer as they arrive: to the spool file (AXFR form) or memory."""

    def __init__(self, apex: str, ixfr: bool, spool: Path) -> None:
        self.apex = apex
        self.ixfr = ixfr
        self.spool = spool
        self.form: str | None = None
        self.pending: list[tuple[str, int, int, str]] = []
        self.out: Any = None
        self.count = 0
        self.soas = 0
        self.final: int | None = None
        self.done = False

    def add(self, records: list[tuple[str, int, int, str]], primary: Endpoint) -> None:
        for rec in records:
            if self.done:
                raise TransferError(f"{primary}: records after the closing SOA")
            owner, _ttl, rdtype, text = rec
            is_soa = rdtype == wireparse.SOA and owner.lower() == self.apex
            if self.count == 0 and not is_soa:
                raise TransferError(f"{primary}: transfer does not start with the zone's SOA")
            self.count += 1
            if is_soa:
                self.soas += 1
                serial = int(text.split()[2])
                if self.final is None:
                    self.final = serial
            if self.form is None and self.count == 2:
                self.form = "ixfr" if self.ixfr and is_soa else "axfr"
                if self.form == "axfr":
                    self._open()
            if self.form == "axfr":
                if is_soa and self.soas >= 2:
                    self.done = True  # the closing SOA
                else:
                    self.out.write(_line(rec))
            else:
                self.pending.append(rec)
                if self.form == "ixfr" and is_soa and self.final == serial:
                    # SOA(new) [SOA(old) ... SOA(newer) ...]+ SOA(new): even count ends it
                    self.done = self.soas >= 4 and self.soas % 2 == 0

    def up_to_date(self, serial: int | None) -> bool:
        """One SOA, no more (RFC 1995 4): the client's serial is current."""
        return (
            self.ixfr
            and self.count == 1
            and self.final is not None
            and serial is not None
            and not rfc1982.gt(self.final, serial)
        )

    def _open(self) -> None:
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        self.out = self.spool.open("w", encoding="utf-8")
        self.out.write(
            f"; transferred copy of {self.apex}, written by mamori\n$ORIGIN {self.apex}\n"
        )
        for rec in self.pending:
            self.out.write(_line(rec))
        self.pending = []

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
            self.spool.unlink(missing_ok=True)

    async def result(self, primary: Endpoint) -> FullZone | Incremental:
        assert self.final is not None
        if self.form == "axfr":
            self.out.flush()
            os.fsync(self.out.fileno())
            self.out.close()
            self.out = None
            return FullZone(self.final, self.spool, self.count - 1)
        rrs = []
        for i, rec in enumerate(self.pending):
            rrs.append(_rr(rec))
            if i % 100 == 99:
                await asyncio.sleep(0)  # converting thousands of records: let queries in
        return _interpret(rrs, self.final, primary, [_line(rec) for rec in self.pending])


def _line(rec: tuple[str, int, int, str]) -> str:
    owner, ttl, rdtype, text = rec
    return f"{owner} {ttl} IN {wireparse.type_text(rdtype)} {text}\n"


def _rr(rec: tuple[str, int, int, str]) -> RR:
    owner, ttl, rdtype, text = rec
    rd = dns.rdata.from_text(
        dns.rdataclass.IN,
        dns.rdatatype.RdataType(rdtype),
        text,
        origin=dns.name.root,
        relativize=False,
    )
    return dns.name.from_text(owner), ttl, rd


def _interpret(
    rrs: list[RR], final: int, primary: Endpoint, texts: list[str] | None = None
) -> Incremental:
    """An IXFR answer (RFC 1995 form) as deltas (*texts*: the records as lines)."""
    apex = rrs[0][0]
    deltas: list[Delta] = []
    body = rrs[1:-1]
    lines = texts[1:-1] if texts is not None else None
    i = 0
    while i < len(body):
        name, _ttl, rd = body[i]
        if rd.rdtype != dns.rdatatype.SOA or name != apex:
            raise TransferError(f"{primary}: malformed IXFR (expected an SOA at record {i + 2})")
        delta = Delta(int(rd.serial), 0)  # type: ignore[attr-defined]
        start = i
        i += 1
        while i < len(body) and not (body[i][2].rdtype == dns.rdatatype.SOA and body[i][0] == apex):
            i += 1
        delta.deleted = body[start:i]
        if lines is not None:
            delta.deleted_text = lines[start:i]
        if i >= len(body):
            raise TransferError(f"{primary}: malformed IXFR (deletions without additions)")
        delta.new = int(body[i][2].serial)  # type: ignore[attr-defined]
        start = i
        i += 1
        while i < len(body) and not (body[i][2].rdtype == dns.rdatatype.SOA and body[i][0] == apex):
            i += 1
        delta.added = body[start:i]
        if lines is not None:
            delta.added_text = lines[start:i]
        deltas.append(delta)
    if not deltas or deltas[-1].new != final:
        raise TransferError(f"{primary}: malformed IXFR (does not end at serial {final})")
    return Incremental(final, deltas)
