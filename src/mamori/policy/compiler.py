"""Compiling a policy zone: ``LoadedZone`` -> the bytes of a compiled zone (layout.py).

Runs in the control plane, step-wise (a generator yielding every few
thousand entries) so an event loop can drive it between queries; the result
is written to a file that every worker maps (``compiled.CompiledZone``).
"""

from __future__ import annotations

import marshal
import struct
import zlib
from collections.abc import Callable, Generator

import dns.name

from mamori.policy import codec, hashtable
from mamori.policy.layout import (
    CRC_CHUNK,
    FORMAT_VERSION,
    HEAD,
    HEADER_SIZE,
    IP_TABLES,
    MAGIC,
    ORDER,
    STEP,
    label_count,
)
from mamori.policy.model import Trigger
from mamori.policy.rules import COMPLEX_BASE, LoadedZone
from mamori.policy.shards import ShardedIndex
from mamori.policy.steps import run


def compile_zone(zone: LoadedZone, source: str = "") -> bytes:
    """``compile_steps`` run to the end at once."""
    return run(compile_steps(zone, source))


def compile_steps(zone: LoadedZone, source: str = "") -> Generator[None, None, bytes]:
    """The compiled form of *zone* as bytes; yields every STEP entries (~2 ms of work).

    The final join of the parts is one step (~25 ms at a million rules): a caller
    on an event loop that writes a file should take ``compile_parts_steps`` instead.
    """
    parts = yield from compile_parts_steps(zone, source)
    return b"".join(parts)


def compile_parts_steps(zone: LoadedZone, source: str = "") -> Generator[None, None, list[bytes]]:
    """The compiled form of *zone* as consecutive parts (write them in order to a file).

    *source* is stored as given (e.g. a signature of the zone file) and read
    back as ``CompiledZone.source``. Local-Data codes are renumbered densely
    (removed rules' slots are dropped). Raises ValueError if the result would
    exceed 4 GiB.
    """
    origin = dns.name.from_text(zone.name)
    complex_blobs: list[bytes] = []
    remap: dict[int, int] = {}
    exact = yield from _qname_items(zone, zone.exact, remap, complex_blobs, origin)
    wild = yield from _qname_items(zone, zone.wild, remap, complex_blobs, origin)
    nsd: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
    counts = {int(t): 0 for t in Trigger}
    counts[Trigger.QNAME] = len(exact[0]) + len(wild[0])
    index_of: dict[int, int] = {}
    other: list[bytes] = []
    for i, r in enumerate(zone.other):
        if not i % 1000:
            yield
        counts[r.trigger] += 1
        index_of[id(r)] = i
        if r.trigger is Trigger.NSDNAME:
            nsd[r.wildcard][r.match_key] = i
        other.append(marshal.dumps(codec.encode_rule(r, origin)))
    ents = yield from _empty_nonterminals(exact[0], wild[0], zone.exact.__contains__)
    nsd_ents = yield from _empty_nonterminals(list(nsd[0]), list(nsd[1]), nsd[0].__contains__)
    ip_tables: list[tuple[list[bytes], list[int]]] = []
    for trigger, version in IP_TABLES:
        bits = 32 if version == 4 else 128
        items: dict[bytes, int] = {}
        for i, (net, rule) in enumerate(zone.ip_rules.get(trigger, [])):
            if not i % STEP:
                yield
            if net.version == version:  # later rules for the same prefix win (as a dict)
                value = net.prefixlen << bits | int(net.network_address)
                items[value.to_bytes(bits // 8 + 1, "big")] = index_of[id(rule)]
        ip_tables.append((list(items), list(items.values())))
    # QNAME exact, wildcard; NSDNAME exact, wildcard; QNAME, NSDNAME empty non-terminals
    name_tables = [exact, wild, *((list(d), list(d.values())) for d in nsd), ents, nsd_ents]

    parts: list[bytes] = [bytes(HEADER_SIZE)]  # the header, filled in last
    size = HEADER_SIZE
    sections: list[int] = []
    for keys, values in (*name_tables, *ip_tables):
        sections.append(size)
        table = yield from hashtable.build_steps(keys, values, size)
        parts += table
        size += sum(map(len, table))
    for blobs in (complex_blobs, other):
        sections.append(size)
        blob = yield from codec.blob_steps(blobs, size)
        parts.append(blob)
        size += len(blob)

    masks = []  # bit n: some key has n labels (lookups probe only those suffixes)
    for keys, _ in name_tables:
        mask = 0
        for i in range(0, len(keys), STEP):
            for n in set(map(label_count, keys[i : i + STEP])):
                mask |= 1 << n
            yield
        masks.append(mask)
    ip_lens = {
        (int(t), v): tuple(sorted({k[0] for k in keys}, reverse=True))
        for (t, v), (keys, _) in zip(IP_TABLES, ip_tables, strict=True)
    }
    n_exact, n_wild = len(exact[0]), len(wild[0])
    del exact, wild, ents, nsd_ents, name_tables, ip_tables, other, complex_blobs  # freed here
    yield
    soa = codec.encode_record(zone.soa, origin) if zone.soa is not None else None
    meta = marshal.dumps(
        {
            "name": zone.name,
            "serial": int(zone.serial),
            "source": source,
            "soa": soa,
            "apex_ns": tuple(codec.encode_record(r, origin) for r in zone.apex_ns),
            "simple_ttl": zone.simple_ttl,
            "skipped": len(zone.skipped),
            "skipped_reasons": tuple(zone.skipped[:100]),
            "counts": counts,
            "exact": n_exact,
            "wild": n_wild,
            "masks": tuple(masks),
            "ip_lens": ip_lens,
            "sections": tuple(sections),
        }
    )
    parts.append(meta)
    crc = 0
    for part in parts[1:]:
        view = memoryview(part)
        for i in range(0, len(part), CRC_CHUNK):
            crc = zlib.crc32(view[i : i + CRC_CHUNK], crc)
            yield
        view.release()
    total = size + len(meta)
    head = HEAD.pack(
        MAGIC, FORMAT_VERSION, marshal.version, ORDER, 0, total, size, len(meta), crc, 0
    )
    head_crc = zlib.crc32(meta, zlib.crc32(head[: HEAD.size - 4]))
    parts[0] = (head[: HEAD.size - 4] + struct.pack("<I", head_crc)).ljust(HEADER_SIZE, b"\0")
    return parts


def _qname_items(
    zone: LoadedZone,
    index: ShardedIndex,
    remap: dict[int, int],
    blobs: list[bytes],
    origin: dns.name.Name,
) -> Generator[None, None, tuple[list[bytes], list[int]]]:
    """Keys and codes of an index, Local-Data codes renumbered into *blobs*."""
    keys: list[bytes] = []
    codes: list[int] = []
    for shard in index.shards:
        keys += shard.keys()
        start = len(codes)
        codes += shard.values()
        yield
        if zone.complex:
            for j in range(start, len(codes)):
                code = codes[j]
                if code >= COMPLEX_BASE:
                    new = remap.get(code)
                    if new is None:
                        new = remap[code] = COMPLEX_BASE + len(blobs)
                        rule = zone.complex[code - COMPLEX_BASE]
                        blobs.append(marshal.dumps(codec.encode_rule(rule, origin)))
                    codes[j] = new
    return keys, codes


def _empty_nonterminals(
    exact: list[bytes], wild: list[bytes], has_rule: Callable[[bytes], bool]
) -> Generator[None, None, tuple[list[bytes], list[int]]]:
    """Keys (values: 0) of the empty non-terminal table (RFC 4592 section 2.2.2).

    An empty non-terminal is a name of the zone with no rule of its own but
    owner names below it: a name above an *exact* owner, or a wildcard's
    parent (*wild*: the keys below the ``*``) or a name above it (``*.b.a``
    makes ``b.a`` and ``a`` exist), that *has_rule* (an exact rule) says has
    no rule. Lookups probe this table only for the name one label below a
    wildcard's parent (layout.name_lookup), so only those are kept: a zone
    without wildcards has none, a feed's unrelated subdomains add nothing.
    """
    found: set[bytes] = set()
    parents = set(wild)
    for keys, itself in ((exact, False), (wild, True)):
        if not parents:
            break
        for start in range(0, len(keys), STEP):
            for key in keys[start : start + STEP]:
                i = 0 if itself else key[0] + 1 if key[0] else 0
                while key[i]:
                    j = i + key[i] + 1
                    if key[j:] in parents and not has_rule(child := key[i:]):
                        found.add(child)
                    i = j
            yield
    keys = list(found)
    return keys, [0] * len(keys)
