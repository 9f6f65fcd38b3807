"""Passive DNS index keys: reversed names, addresses as 16 bytes, U-label forms."""

from __future__ import annotations

import ipaddress
import socket

import idna


def unicode_if_idn(name: str) -> str:
    """The U-label form of an IDN (``unicode_name``); "" for a name with nothing to decode."""
    u = unicode_name(name)
    return "" if u == name else u


def unicode_name(name: str) -> str:
    """``xn--bcher-kva.example.`` -> ``bücher.example.`` (labels that do not decode stay)."""
    if "xn--" not in name:
        return name
    return ".".join(_ulabel(label) for label in name.split("."))


def _ulabel(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return str(idna.decode(label))
    except (idna.IDNAError, UnicodeError):
        return label


def reverse_name(name: str) -> str:
    """``www.example.com.`` -> ``com.example.www.``"""
    labels = [x for x in name.split(".") if x]
    return ".".join(reversed(labels)) + "."


_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


def ip_key(text: str) -> bytes | None:
    """An address as 16 bytes (IPv4 mapped), for range scans; None if not an address."""
    try:
        if ":" in text:
            return socket.inet_pton(socket.AF_INET6, text.split("%", 1)[0])
        return _V4_MAPPED + socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return None


def net_range(lo_text: str, hi_text: str | None = None) -> tuple[bytes, bytes]:
    """An address, a CIDR network, or two addresses as a (low, high) rkey range."""
    if hi_text is not None:
        lo, hi = ip_key(lo_text), ip_key(hi_text)
        if lo is None or hi is None:
            raise ValueError(f"not an address range: {lo_text}-{hi_text}")
        return lo, hi
    net = ipaddress.ip_network(lo_text, strict=False)
    first, last = ip_key(str(net.network_address)), ip_key(str(net.broadcast_address))
    assert first is not None and last is not None
    return first, last


def prefix_range(prefix: str) -> tuple[str, str]:
    """Strings starting with *prefix*: [prefix, prefix with its last character + 1)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


# rrtypes whose rdata holds a name (for "which names point at X" lookups):
# type -> position of the name among the rdata fields
NAME_RDATA = {5: 0, 2: 0, 12: 0, 39: 0, 15: 1, 33: 3}  # CNAME NS PTR DNAME MX SRV


def rdata_name(rrtype: int, rdata: str) -> str | None:
    """The name inside a CNAME/NS/PTR/DNAME/MX/SRV rdata (lowercase, final dot)."""
    pos = NAME_RDATA.get(rrtype)
    if pos is None:
        return None
    fields = rdata.split()
    if len(fields) <= pos:
        return None
    name = fields[pos].lower()
    return name if name.endswith(".") else name + "."
