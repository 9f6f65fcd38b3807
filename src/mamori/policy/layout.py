"""The compiled zone file format: header layout, constants, name matching.

Shared by the writer (``compiler``) and the reader (``compiled``). File
layout (little-endian header, native-endian tables; see hashtable.py): a
64-byte header (magic, format version, marshal version, byte order, total
length, metadata offset and length, CRC32 of the body, CRC32 of the header
and metadata), then the sections -- QNAME exact, wildcard and empty
non-terminal tables, the same three for NSDNAME, six IP prefix tables
(Client-IP, Response-IP, NSIP; IPv4 and IPv6), the Local-Data rule blob, the
other-trigger rule blob -- and last the metadata (a marshal'd dict: zone name,
serial, source, SOA, counts, label-count masks, prefix lengths, section
offsets).

Name matching follows RFC 4592 as BIND 9 does in a policy zone: a name
either exists in the zone (an owner with a rule, or an *empty non-terminal*:
no rule, but owner names below it) or it does not; ``*.parent`` answers only
for names whose closest existing ancestor (closest encloser) is ``parent``.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable

from mamori.errors import MamoriError
from mamori.policy import hashtable
from mamori.policy.model import Trigger

MAGIC = b"MAMORPZ\x00"
FORMAT_VERSION = 2  # 2: empty non-terminal tables (RFC 4592 wildcard matching)
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
    nmask: int,
    eget: Callable[[bytes], int | None],
    wget: Callable[[bytes], int | None],
    nget: Callable[[bytes], int | None],
) -> tuple[bytes, bool, int] | None:
    """The rule for a wire *name*: its own, else the wildcard of its closest encloser.

    RFC 4592 as BIND 9 applies it to policy zones (QNAME and NSDNAME
    triggers): an exact owner matches itself; ``*.parent`` matches a name
    below ``parent`` only when no name between them exists in the zone (an
    owner with a rule, or an empty non-terminal). So with ``*.a`` and
    ``x.b.a``, neither ``b.a`` nor ``y.b.a`` matches ``*.a``; with ``*.a`` and
    ``b.a``, ``y.b.a`` does not either. ``*.parent`` never matches ``parent``.

    *eget*/*wget*/*nget* probe the exact, wildcard (key: the name below the
    ``*``) and empty non-terminal tables (the last is only asked for names one
    label below a wildcard's parent, so it need hold no others);
    *emask*/*wmask*/*nmask* have bit n set when some key of that table has n
    labels (other suffixes are not probed). Returns (matched key, wildcard?,
    value) or None.

    Cost: as many probes as before for a name no wildcard covers (the exact
    probe, then one per parent label count some wildcard has); a name under a
    wildcard costs one or two probes more (the name one label below the
    wildcard's parent, on the way to *name*: if it exists, it or a name below
    it is the closest encloser).
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
        child = i
        i += name[i] + 1
        k -= 1
        if wmask >> k & 1:
            suffix = name[i:]
            found = wget(suffix)
            if found is not None:
                if name[child] == 1 and name[child + 1] == 42:  # the owner "*.suffix" itself
                    return None if child else (suffix, True, found)  # (below it: nothing)
                # Any existing name between *name* and suffix makes the child of
                # suffix on the way exist too (it is that name or has it below).
                k += 1
                if nmask >> k & 1 and nget(name[child:]) is not None:
                    return None
                if child and emask >> k & 1 and eget(name[child:]) is not None:
                    return None
                return suffix, True, found
    return None


def proper_ancestors(key: bytes) -> list[bytes]:
    """The wire names strictly above *key*, closest first, the root (apex) left out."""
    out = []
    i = key[0] + 1 if key[0] else 0
    while key[i]:
        out.append(key[i:])
        i += key[i] + 1
    return out
