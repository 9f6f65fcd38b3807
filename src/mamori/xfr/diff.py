"""What changed between two versions of a published zone, for IXFR.

Compares the two compact indexes shard by shard (a dict lookup per rule, no
rendering of unchanged simple rules) and yields between shards, so a reload
of a million-rule zone is diffed between queries. Rules outside the QNAME
index (IP and NS triggers) and the apex NS records are compared as record sets.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from mamori.policy.rules import COMPLEX_BASE, LoadedZone
from mamori.policy.shards import SHARDS
from mamori.xfr.render import Renderer, apex_ns_rrs


@dataclass
class Version:
    """One step of the IXFR history: what changed from *old* to *new*."""

    old: int
    new: int
    deleted: list[bytes]  # wire RRs, without the SOA
    added: list[bytes]


def diff_steps(old: LoadedZone, new: LoadedZone, old_serial: int) -> Generator[None, None, Version]:
    deleted: list[bytes] = []
    added: list[bytes] = []
    before, after = set(apex_ns_rrs(old)), set(apex_ns_rrs(new))
    deleted += sorted(before - after)
    added += sorted(after - before)
    r_old, r_new = Renderer(old), Renderer(new)
    for wild, o_index, n_index in ((False, old.exact, new.exact), (True, old.wild, new.wild)):
        for s in range(SHARDS):
            o_shard, n_shard = o_index.shards[s], n_index.shards[s]
            for key, code in o_shard.items():
                n_code = n_shard.get(key)
                if n_code == code and code < COMPLEX_BASE:
                    continue  # the same simple rule
                was = r_old.entry(key, wild, code)
                now = r_new.entry(key, wild, n_code) if n_code is not None else []
                deleted += [x for x in was if x not in now]
                added += [x for x in now if x not in was]
            for key, code in n_shard.items():
                if key not in o_shard:
                    added += r_new.entry(key, wild, code)
            yield
    before, after = set(r_old.others()), set(r_new.others())
    deleted += sorted(before - after)
    added += sorted(after - before)
    return Version(old_serial, new.serial, deleted, added)
