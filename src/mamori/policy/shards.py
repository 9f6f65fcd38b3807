"""A dict split into shards, so no single resize copies a million entries.

A Python dict that grows to N entries resizes by copying everything it holds,
in one C call; at a million entries that is ~100 ms during which nothing else
runs (a zone reload on the DNS loop would stall answers). Sixty-four shards
keep every resize to a sixtieth of that. Lookups pay one hash (cached by the
bytes object, so dict.get does not compute it again) and one tuple index.
"""

from __future__ import annotations

from collections.abc import Iterator

SHARDS = 64
_MASK = SHARDS - 1


class ShardedIndex:
    """Mapping of lowercased wire names (bytes) to small int codes."""

    __slots__ = ("shards",)

    def __init__(self) -> None:
        self.shards: tuple[dict[bytes, int], ...] = tuple({} for _ in range(SHARDS))

    def get(self, key: bytes) -> int | None:
        return self.shards[hash(key) & _MASK].get(key)

    def __setitem__(self, key: bytes, code: int) -> None:
        self.shards[hash(key) & _MASK][key] = code

    def pop(self, key: bytes) -> int | None:
        return self.shards[hash(key) & _MASK].pop(key, None)

    def __contains__(self, key: bytes) -> bool:
        return key in self.shards[hash(key) & _MASK]

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def __bool__(self) -> bool:
        return any(self.shards)

    def items(self) -> Iterator[tuple[bytes, int]]:
        for s in self.shards:
            yield from s.items()
