"""Static hash tables inside a read-only buffer (bytes or an mmap), probed from Python.

A compiled policy zone keeps its indexes as these tables so that every worker
process maps one copy from the page cache instead of building dicts. A table
maps byte-string keys (at most 255 bytes: wire names, packed IP prefixes) to
values below 2**24. Keys are hashed with ``zlib.crc32``, stable across
processes and runs (Python's ``hash()`` of bytes is salted per process).

Layout at a byte offset ``at`` (8-aligned) of the buffer, native-endian uint32
words (the file header records the byte order):

* header: ``nbuckets`` (a power of two >= entries), ``entries``, ``keys_len``, 0;
* ``nbuckets + 1`` bucket starts: bucket ``b`` holds the entry words
  ``[starts[b], starts[b + 1])`` (word index into the entry array, 3 words per entry);
* entries, 3 words each: crc32 of the key, absolute buffer offset of the key,
  ``value << 8 | key length``; grouped by bucket;
* the keys blob, zero-padded so that the table's length is a multiple of 8.

A probe costs one crc32, two bucket reads and, per entry of the bucket, one
hash compare; only an equal hash leads to comparing the stored key bytes
(a slice of the buffer), so a hash collision never answers a wrong key.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from array import array
from collections.abc import Generator, Iterator, Sequence
from itertools import accumulate

from mamori.errors import MamoriError

STEP = 4096  # entries hashed or placed between two yields (~2 ms)
_HEADER = struct.Struct("=4I")
MAX_VALUE = (1 << 24) - 1
MAX_OFFSET = (1 << 32) - 1
# What a compiled zone lives in: bytes in memory, or a file mapped read-only.
Buffer = bytes | bytearray | mmap.mmap


class TableError(MamoriError, ValueError):
    """A table that does not fit its buffer (truncated or corrupt file)."""


def _buckets(n: int) -> int:
    nb = 1
    while nb < n:
        nb <<= 1
    return nb


def build_steps(
    keys: Sequence[bytes], values: Sequence[int], at: int
) -> Generator[None, None, list[bytes]]:
    """The table of *keys* -> *values* (unique keys) to place at buffer offset *at*.

    Returns the table as a list of byte strings to concatenate (no big copy
    here); yields every STEP entries. No Python object is made per entry
    (arrays of machine words), so the garbage collector has nothing to scan.
    Raises ValueError for a key longer than 255 bytes, a value outside
    0..2**24-1, or offsets beyond 4 GiB.
    """
    n = len(keys)
    nb = _buckets(n)
    mask = nb - 1
    crc = zlib.crc32
    hashes = array("I")
    counts = array("I", bytes(4 * (nb + 1)))
    for i in range(0, n, STEP):
        chunk = keys[i : i + STEP]
        vals = values[i : i + STEP]
        if max(map(len, chunk)) > 255 or not 0 <= min(vals) <= max(vals) <= MAX_VALUE:
            raise ValueError("table entry out of range (key over 255 bytes or value over 2**24-1)")
        for key in chunk:
            h = crc(key)
            hashes.append(h)
            counts[(h & mask) + 1] += 1
        yield
    words = array("I")  # bucket starts as word indexes (3 words an entry)
    total = 0
    for i in range(0, nb + 1, STEP * 16):
        run = list(accumulate(counts[i : i + STEP * 16], initial=total))
        total = run[-1]
        words.extend([3 * s for s in run[1:]])
        yield
    del counts
    entries = array("I", bytes(12 * n))
    kbase = at + _HEADER.size + 4 * (nb + 1) + 12 * n
    pos = words[:-1]
    off = kbase
    for i in range(0, n, STEP):
        for j in range(i, min(i + STEP, n)):
            h = hashes[j]
            b = h & mask
            p = pos[b]
            pos[b] = p + 3
            key = keys[j]
            entries[p] = h
            entries[p + 1] = off
            entries[p + 2] = values[j] << 8 | len(key)
            off += len(key)
        yield
    if off > MAX_OFFSET:
        raise ValueError("compiled zone larger than 4 GiB")
    blob = []
    for i in range(0, n, STEP * 4):
        blob.append(b"".join(keys[i : i + STEP * 4]))
        yield
    pad = bytes(-(off - at) % 8)  # the next section starts 8-aligned
    head = _HEADER.pack(nb, n, off - kbase + len(pad), 0)
    return [head, words.tobytes(), entries.tobytes(), *blob, pad]


class Table:
    """Read side of one table; *buf* is the whole buffer, *view* a memoryview of it."""

    __slots__ = ("buckets", "buf", "end", "entries", "mask", "n")

    def __init__(self, buf: Buffer, view: memoryview, at: int) -> None:
        if at < 0 or at % 8 or at + _HEADER.size > len(view):
            raise TableError(f"table at offset {at} outside the buffer ({len(view)} bytes)")
        nb, n, keys_len, _ = _HEADER.unpack_from(view, at)
        start = at + _HEADER.size
        mid = start + 4 * (nb + 1)
        end = mid + 12 * n + keys_len
        if nb & (nb - 1) or nb < 1 or n > nb * 4 or end > len(view):
            raise TableError(f"table at offset {at}: bad header or truncated")
        self.buf = buf
        self.mask: int = nb - 1
        self.n: int = n
        self.end = end  # offset just past this table (the next section starts here)
        self.buckets = view[start:mid].cast("I")
        self.entries = view[mid : mid + 12 * n].cast("I")

    def __len__(self) -> int:
        return self.n

    def get(self, key: bytes) -> int | None:
        """The value stored for *key*, or None."""
        h = zlib.crc32(key)
        b = h & self.mask
        starts = self.buckets
        j = starts[b]
        end = starts[b + 1]
        if j == end:
            return None
        e = self.entries
        while j < end:
            if e[j] == h:
                v: int = e[j + 2]
                o: int = e[j + 1]
                if self.buf[o : o + (v & 255)] == key:
                    return v >> 8
            j += 3
        return None

    def items(self) -> Iterator[tuple[bytes, int]]:
        """Every (key, value), in bucket order (tests, diagnostics, diffing)."""
        e = self.entries
        for j in range(0, 3 * self.n, 3):
            o, v = e[j + 1], e[j + 2]
            yield bytes(self.buf[o : o + (v & 255)]), v >> 8

    def release(self) -> None:
        """Drop the memoryviews over the buffer (an mmap can close only after this)."""
        self.buckets.release()
        self.entries.release()
