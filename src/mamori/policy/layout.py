"""The compiled zone file format: header layout, constants, name matching.

Shared by the writer (``compiler``) and the reader (``compiled``). File
layout (little-endian header, native-endian tables; see hashtable.py): a
64-byte header (magic, format version, marshal version, byte order, total
length, metadata offset and length, CRC32 of the body, CRC32 of the header
and metadata), then the sections -- QNAME exact and wildcard tables, NSDNAME
exact and wildcard tables, six IP prefix tables (Client-IP, Response-IP,
NSIP; IPv4 and IPv6), the Local-Data rule blob, the other-trigger rule blob --
and last the metadata (a marshal'd dict: zone name, serial, source, SOA,
counts, label-count masks, prefix lengths, section offsets).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable

from mamori.errors import MamoriError
from mamori.policy import hashtable
from mamori.policy.model import Trigger

MAGIC = b"MAMORPZ\x00"
FORMAT_VERSION = 1
HEADER_SIZE = 64
HEAD = struct.Struct("<8sIIIIQQQII")  # the last field (header CRC) starts at HEAD.size - 4
ORDER = 1 if sys.byteorder == "little" else 2
STEP = hashtable.STEP
CRC_CHUNK = 1 << 20  # bytes checksummed between two yields
IP_TABLES = tuple(
    (t, v) for t in (Trigger.CLIENT_IP, Trigger.RESPONSE_IP, Trigger.NSIP) for v in (4, 6)
)


class CompiledZoneError(MamoriError, ValueError):
    """A buffer that is not a usable compiled zone (truncated, corrupt, other version)."""


def label_count(key: bytes) -> int:
    """Labels of an uncompressed wire name, the root not counted (``b"\\0"`` -> 0)."""
    i = n = 0
    while key[i]:
        i += key[i] + 1
        n += 1
    return n


def name_lookup(
    name: bytes,
    emask: int,
    wmask: int,
    eget: Callable[[bytes], int | None],
    wget: Callable[[bytes], int | None],
) -> tuple[bytes, bool, int] | None:
    """Exact-then-closest-wildcard lookup of a wire *name* (RPZ QNAME/NSDNAME matching).

    *emask*/*wmask*: bit n set when some exact/wildcard key has n labels
    (suffixes with other label counts are not probed). Returns (matched key,
    wildcard?, value) or None; ``*.parent`` matches only names below parent.
    """
    i = 0
    n = name[0]
    labels = 0
    while n:
        i += n + 1
        n = name[i]
        labels += 1
    if emask >> labels & 1:
        found = eget(name)
        if found is not None:
            return name, False, found
    i = 0
    k = labels
    while k:  # closest parent first: the suffix after the next label has k - 1 labels
        i += name[i] + 1
        k -= 1
        if wmask >> k & 1:
            suffix = name[i:]
            found = wget(suffix)
            if found is not None:
                return suffix, True, found
    return None
