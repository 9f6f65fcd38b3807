"""Live capture from a network interface (Linux AF_PACKET; needs root or CAP_NET_RAW).

The kernel filters with a classic BPF program equal to tcpdump's ``port 53``
for Ethernet frames (generated with ``tcpdump -dd "port 53"``), so only DNS
packets reach Python. Frames go through the same decoding as captures
(``sensors/pcap.py``: IPv4/IPv6, UDP, TCP reassembly). On a loopback
interface each packet is seen twice by AF_PACKET (sent and received): the
outgoing copy is skipped there.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import time
from collections.abc import Callable, Iterator

from mamori.pdns.sensors.pcap import Message, Reader

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
# tcpdump -dd "port 53" (Ethernet: IPv4 and IPv6, UDP/TCP/SCTP, first fragments);
# the port is the k of the four port comparisons (PORT_AT), set by port_filter().
PORT_53 = [
    (0x28, 0, 0, 0x0000000C), (0x15, 0, 8, 0x000086DD), (0x30, 0, 0, 0x00000014),
    (0x15, 2, 0, 0x00000084), (0x15, 1, 0, 0x00000006), (0x15, 0, 17, 0x00000011),
    (0x28, 0, 0, 0x00000036), (0x15, 14, 0, 0x00000035), (0x28, 0, 0, 0x00000038),
    (0x15, 12, 13, 0x00000035), (0x15, 0, 12, 0x00000800), (0x30, 0, 0, 0x00000017),
    (0x15, 2, 0, 0x00000084), (0x15, 1, 0, 0x00000006), (0x15, 0, 8, 0x00000011),
    (0x28, 0, 0, 0x00000014), (0x45, 6, 0, 0x00001FFF), (0xB1, 0, 0, 0x0000000E),
    (0x48, 0, 0, 0x0000000E), (0x15, 2, 0, 0x00000035), (0x48, 0, 0, 0x00000010),
    (0x15, 0, 1, 0x00000035), (0x06, 0, 0, 0x00040000), (0x06, 0, 0, 0x00000000),
]  # fmt: skip


PORT_AT = (7, 9, 19, 21)


def port_filter(port: int) -> list[tuple[int, int, int, int]]:
    prog = list(PORT_53)
    for i in PORT_AT:
        code, jt, jf, k = prog[i]
        assert code == 0x15 and k == 53
        prog[i] = (code, jt, jf, port)
    return prog


class CaptureUnavailableError(OSError):
    """No permission (root / CAP_NET_RAW), no such interface, or not Linux."""


def open_socket(iface: str, port: int = 53) -> socket.socket:
    if not hasattr(socket, "AF_PACKET"):
        raise CaptureUnavailableError("live capture needs Linux (AF_PACKET)")
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError as e:
        raise CaptureUnavailableError(
            "live capture needs root or CAP_NET_RAW (setcap cap_net_raw+ep on the python binary)"
        ) from e
    try:
        s.bind((iface, 0))
    except OSError as e:
        s.close()
        raise CaptureUnavailableError(f"interface {iface}: {e.strerror}") from e
    insns = port_filter(port)
    prog = (ctypes.c_ubyte * (8 * len(insns)))()
    for i, (code, jt, jf, k) in enumerate(insns):
        struct.pack_into("HBBI", prog, 8 * i, code, jt, jf, k)
    fprog = struct.pack("HL", len(insns), ctypes.addressof(prog))
    s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it
    s.settimeout(0.5)
    return s


def messages(
    iface: str, stop: Callable[[], bool], reader: Reader | None = None, port: int = 53
) -> Iterator[Message]:
    """DNS responses seen on *iface* (to or from *port*) until *stop()* is true."""
    reader = reader or Reader(port)
    s = open_socket(iface, port)
    loopback = iface == "lo" or iface.startswith("lo:")
    try:
        while not stop():
            try:
                frame, addr = s.recvfrom(65535)
            except TimeoutError:
                continue
            if loopback and addr[2] == PACKET_OUTGOING:
                continue
            reader.counters.packets += 1
            try:
                yield from reader.frame(time.time(), 1, frame)
            except (struct.error, IndexError, ValueError):
                reader.counters.malformed += 1
    finally:
        s.close()
