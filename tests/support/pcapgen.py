"""Hand-built captures for tests: Ethernet/VLAN/Linux-cooked/raw frames, IPv4/IPv6, UDP/TCP."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    return ip(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def tcp(
    src: str, sport: int, dst: str, dport: int, seq: int, payload: bytes, flags: int = 0x18
) -> bytes:
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    return ip(src, dst, 6, hdr + payload)


def ip(src: str, dst: str, proto: int, body: bytes, frag: int = 0) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        return (
            struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), 1, frag, 64, proto, 0)
            + s.packed
            + d.packed
            + body
        )
    # IPv6 with a destination-options extension header before the transport
    ext = bytes([proto, 0]) + b"\x01\x04\x00\x00\x00\x00"
    return struct.pack("!IHBB", 6 << 28, len(body) + 8, 60, 64) + s.packed + d.packed + ext + body


def ether(packet: bytes, vlans: int = 0) -> bytes:
    etype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    tags = b"".join(struct.pack("!HH", 0x8100, 100 + i) for i in range(vlans))
    if tags:  # the first tag's TPID sits where the ethertype would be
        return b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", etype) + packet
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", etype) + packet


def sll(packet: bytes) -> bytes:
    etype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    return (
        struct.pack("!HHH", 0, 1, 6) + b"\x02" * 6 + b"\x00\x00" + struct.pack("!H", etype) + packet
    )


def write_pcap(path: Path, frames: list[tuple[float, bytes]], linktype: int = 1) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for ts, frame in frames:
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            f.write(frame)


def write_pcapng(path: Path, frames: list[tuple[float, bytes]], linktype: int = 1) -> None:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    with path.open("wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        # if_tsresol = 9 (nanoseconds)
        f.write(block(1, struct.pack("<HHI", linktype, 0, 65535) + struct.pack("<HHB3x", 9, 1, 9)
                      + b"\x00\x00\x00\x00"))  # fmt: skip
        for ts, frame in frames:
            t = int(ts * 1e9)
            f.write(block(6, struct.pack("<IIIII", 0, t >> 32, t & 0xFFFFFFFF, len(frame),
                                         len(frame)) + frame))  # fmt: skip
