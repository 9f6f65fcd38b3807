"""DNS messages out of packet captures: pcap and pcapng, read without libpcap.

Link types: Ethernet (with 802.1Q / QinQ VLAN tags), Linux cooked v1 and v2,
raw IPv4/IPv6, BSD loopback. IPv4 (first fragments only) and IPv6 (extension
headers skipped). DNS over UDP and over TCP (port 53 either side), TCP
streams reassembled per direction (retransmissions and out-of-order segments
handled, two-byte length framing). Responses are matched to their queries by
(client, server, transaction ID); a response whose query is not in the
capture (it started mid-way) is used too, and counted. Anything that does not
parse is counted and skipped: a capture never stops the ingest.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
DNS_PORT = 53
MAX_STREAM = 1 << 20  # bytes buffered per TCP direction before giving up on it


@dataclass
class Counters:
    packets: int = 0
    dns_messages: int = 0
    responses: int = 0
    matched: int = 0  # responses whose query was seen
    malformed: int = 0  # frames or messages that did not parse
    skipped: int = 0  # not DNS, fragments, other link types
    tcp_messages: int = 0


@dataclass
class _Stream:
    next_seq: int | None = None
    buf: bytearray = field(default_factory=bytearray)
    pending: dict[int, bytes] = field(default_factory=dict)


# (time, src, sport, dst, dport, DNS message)
Message = tuple[float, str, int, str, int, bytes]


class CaptureError(ValueError):
    """Not a pcap/pcapng file (or a truncated header)."""


def frames(
    f: BinaryIO, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[float, int, bytes]]:
    """(timestamp, link type, frame) of every packet in a pcap or pcapng stream."""
    head = f.read(4)
    if head in PCAP_MAGIC:
        yield from _pcap(f, head, progress)
    elif head == PCAPNG_SHB:
        yield from _pcapng(f, head, progress)
    else:
        raise CaptureError("not a pcap or pcapng capture (unknown magic number)")


def _pcap(
    f: BinaryIO, magic: bytes, progress: Callable[[int], None] | None
) -> Iterator[tuple[float, int, bytes]]:
    endian, unit = PCAP_MAGIC[magic]
    rest = f.read(20)
    if len(rest) < 20:
        raise CaptureError("truncated pcap header")
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0x0FFFFFFF
    rec = struct.Struct(endian + "IIII")
    done = 24
    while True:
        hdr = f.read(16)
        if len(hdr) < 16:
            return
        sec, frac, incl, _orig = rec.unpack(hdr)
        data = f.read(incl)
        if len(data) < incl:
            return  # truncated last packet
        done += 16 + incl
        if progress is not None:
            progress(done)
        yield sec + frac * unit, linktype, data


def _pcapng(
    f: BinaryIO, first: bytes, progress: Callable[[int], None] | None
) -> Iterator[tuple[float, int, bytes]]:
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (link type, seconds per tick)
    done = 0
    btype_raw: bytes | None = first
    while True:
        head = f.read(4) if btype_raw is None else btype_raw
        btype_raw = None
        if len(head) < 4:
            return
        lraw = f.read(4)
        if len(lraw) < 4:
            return
        if head == PCAPNG_SHB:
            bom = f.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(endian + "I", lraw)[0]
            body = bom + f.read(length - 12)
            interfaces = []  # a new section: new interface ids
        else:
            length = struct.unpack(endian + "I", lraw)[0]
            if length < 12:
                raise CaptureError("bad pcapng block length")
            body = f.read(length - 8)
        done += length
        btype = struct.unpack(endian + "I", head)[0]
        if btype == 1:  # Interface Description Block
            linktype = struct.unpack(endian + "H", body[0:2])[0]
            interfaces.append((linktype, _tsresol(body[8:-4], endian)))
        elif btype == 6:  # Enhanced Packet Block
            iface, hi, lo, cap, _orig = struct.unpack(endian + "IIIII", body[:20])
            if iface >= len(interfaces):
                continue
            linktype, unit = interfaces[iface]
            if progress is not None:
                progress(done)
            yield ((hi << 32) | lo) * unit, linktype, body[20 : 20 + cap]
        elif btype == 3 and interfaces:  # Simple Packet Block (no timestamp)
            (orig,) = struct.unpack(endian + "I", body[:4])
            yield 0.0, interfaces[0][0], body[4 : 4 + orig]


def _tsresol(options: bytes, endian: str) -> float:
    """if_tsresol (option 9) of an interface; microseconds by default."""
    i = 0
    while i + 4 <= len(options):
        code, ln = struct.unpack(endian + "HH", options[i : i + 4])
        if code == 0:
            break
        if code == 9 and ln >= 1:
            v = options[i + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -(v & 0x7F)
        i += 4 + ((ln + 3) & ~3)
    return 1e-6


def network(linktype: int, frame: bytes) -> tuple[int, bytes] | None:
    """(IP version, IP packet) of a frame; None for other protocols."""
    if linktype == 1:  # Ethernet
        if len(frame) < 14:
            return None
        etype, off = struct.unpack("!H", frame[12:14])[0], 14
        while etype in (0x8100, 0x88A8, 0x9100) and len(frame) >= off + 4:
            etype, off = struct.unpack("!H", frame[off + 2 : off + 4])[0], off + 4
        payload = frame[off:]
    elif linktype == 113:  # Linux cooked v1
        if len(frame) < 16:
            return None
        etype, payload = struct.unpack("!H", frame[14:16])[0], frame[16:]
    elif linktype == 276:  # Linux cooked v2
        if len(frame) < 20:
            return None
        etype, payload = struct.unpack("!H", frame[0:2])[0], frame[20:]
    elif linktype in (101, 12, 14):  # raw IP
        return (frame[0] >> 4, frame) if frame else None
    elif linktype == 228:
        etype, payload = 0x0800, frame
    elif linktype == 229:
        etype, payload = 0x86DD, frame
    elif linktype == 0:  # BSD loopback: address family in host order
        if len(frame) < 4:
            return None
        fam = frame[0] or frame[3]
        etype = 0x0800 if fam == 2 else 0x86DD if fam in (10, 24, 28, 30) else 0
        payload = frame[4:]
    else:
        return None
    if etype == 0x0800:
        return 4, payload
    if etype == 0x86DD:
        return 6, payload
    return None


def transport(version: int, pkt: bytes) -> tuple[int, str, str, bytes] | None:
    """(protocol, source, destination, transport segment); None for fragments and others."""
    if version == 4:
        if len(pkt) < 20:
            return None
        ihl = (pkt[0] & 0x0F) * 4
        total = struct.unpack("!H", pkt[2:4])[0]
        frag = struct.unpack("!H", pkt[6:8])[0]
        if frag & 0x1FFF or frag & 0x2000:  # a fragment: not reassembled
            return None
        src = socket.inet_ntop(socket.AF_INET, pkt[12:16])
        dst = socket.inet_ntop(socket.AF_INET, pkt[16:20])
        return pkt[9], src, dst, pkt[ihl : max(total, ihl)] if total else pkt[ihl:]
    if len(pkt) < 40:
        return None
    nxt, off = pkt[6], 40
    plen = struct.unpack("!H", pkt[4:6])[0]
    end = 40 + plen if plen else len(pkt)
    while nxt in (0, 43, 60, 51):  # hop-by-hop, routing, destination, AH
        if len(pkt) < off + 2:
            return None
        ln = (pkt[off + 1] + 2) * 4 if nxt == 51 else (pkt[off + 1] + 1) * 8
        nxt, off = pkt[off], off + ln
    if nxt == 44:  # fragment header
        return None
    src = socket.inet_ntop(socket.AF_INET6, pkt[8:24])
    dst = socket.inet_ntop(socket.AF_INET6, pkt[24:40])
    return nxt, src, dst, pkt[off:end]


class Reader:
    """DNS messages of a capture, with counters."""

    def __init__(self, port: int = DNS_PORT) -> None:
        self.port = port
        self.counters = Counters()
        self._streams: dict[tuple[str, int, str, int], _Stream] = {}
        self._queries: dict[tuple[str, int, str, int, bytes], float] = {}

    def messages(
        self, path: Path, progress: Callable[[int], None] | None = None
    ) -> Iterator[Message]:
        with path.open("rb") as f:
            for ts, linktype, frame in frames(f, progress):
                self.counters.packets += 1
                try:
                    yield from self.frame(ts, linktype, frame)
                except (struct.error, IndexError, ValueError):
                    self.counters.malformed += 1

    def frame(self, ts: float, linktype: int, frame: bytes) -> Iterator[Message]:
        """The DNS responses in one captured frame (TCP: when a message completes)."""
        net = network(linktype, frame)
        seg = transport(*net) if net is not None else None
        if seg is None:
            self.counters.skipped += 1
            return
        proto, src, dst, body = seg
        if proto == 17 and len(body) >= 8:
            sport, dport = struct.unpack("!HH", body[:4])
            if self.port not in (sport, dport):
                self.counters.skipped += 1
                return
            yield from self._dns(ts, src, sport, dst, dport, body[8:])
        elif proto == 6 and len(body) >= 20:
            sport, dport, seq = struct.unpack("!HHI", body[:8])
            if self.port not in (sport, dport):
                self.counters.skipped += 1
                return
            off = (body[12] >> 4) * 4
            flags = body[13]
            yield from self._tcp(ts, (src, sport, dst, dport), seq, flags, body[off:])
        else:
            self.counters.skipped += 1

    def _tcp(
        self, ts: float, flow: tuple[str, int, str, int], seq: int, flags: int, data: bytes
    ) -> Iterator[Message]:
        st = self._streams.get(flow)
        if flags & 0x02:  # SYN: the stream starts at seq + 1
            self._streams[flow] = _Stream(next_seq=(seq + 1) & 0xFFFFFFFF)
            return
        if st is None:
            st = self._streams[flow] = _Stream(next_seq=seq)  # joined mid-stream
        if data:
            st.pending[seq] = data
            assert st.next_seq is not None
            while st.pending:
                nxt = st.next_seq
                chunk = st.pending.pop(nxt, None)
                if chunk is None:
                    # a retransmission overlapping what we have: keep its new tail
                    old = [s for s in st.pending if (nxt - s) & 0xFFFFFFFF < 1 << 31]
                    if not old:
                        break
                    s = old[0]
                    piece = st.pending.pop(s)
                    chunk = piece[(nxt - s) & 0xFFFFFFFF :]
                    if not chunk:
                        continue
                st.buf += chunk
                st.next_seq = (nxt + len(chunk)) & 0xFFFFFFFF
            if len(st.buf) > MAX_STREAM:
                self.counters.malformed += 1
                st.buf.clear()
            while len(st.buf) >= 2:
                ln = struct.unpack("!H", st.buf[:2])[0]
                if len(st.buf) < 2 + ln:
                    break
                msg = bytes(st.buf[2 : 2 + ln])
                del st.buf[: 2 + ln]
                self.counters.tcp_messages += 1
                yield from self._dns(ts, *flow, msg)
        if flags & 0x05:  # FIN or RST: the direction is over
            self._streams.pop(flow, None)

    def _dns(
        self, ts: float, src: str, sport: int, dst: str, dport: int, data: bytes
    ) -> Iterator[Message]:
        if len(data) < 12:
            self.counters.malformed += 1
            return
        self.counters.dns_messages += 1
        if data[2] & 0x80:  # QR: a response
            self.counters.responses += 1
            if self._queries.pop((dst, dport, src, sport, data[:2]), None) is not None:
                self.counters.matched += 1
            yield ts, src, sport, dst, dport, data
        else:
            if len(self._queries) > 100_000:
                self._queries.clear()  # a capture of queries only: do not grow forever
            self._queries[(src, sport, dst, dport, data[:2])] = ts
