"""In-memory aggregation of observations, flushed to the store in batches.

Per-row upserts into SQLite reach ~85-90k observations/s; most observations
repeat a tuple already seen, so they are summed here first (time_first =
min, time_last = max, count = sum) and written once per flush.
"""

from __future__ import annotations

from collections.abc import Iterable

from mamori.pdns.decode import from_wire
from mamori.pdns.model import Nxdomain, Observation
from mamori.store.base import WriterMark
from mamori.store.pdns_base import FileProgress, NxTuples, PdnsStore, Tuples


class Aggregator:
    def __init__(self, keep_nxdomain: bool = True) -> None:
        self.tuples: Tuples = {}
        self.nx: NxTuples = {}
        self.sensors: dict[str, list[int]] = {}  # sensor -> [observations, last seen]
        self.keep_nxdomain = keep_nxdomain
        self.pending = 0  # observations since the last flush

    def add(self, observations: Iterable[Observation]) -> None:
        tuples = self.tuples
        get = tuples.get
        n = 0
        last = 0
        sensor = ""
        # no min()/max() calls: a call per observation is a large share of this loop
        for name, rtype, rdata, bw, when, sensor in observations:  # noqa: B007 (used after)
            key = (name, rtype, rdata, bw)
            agg = get(key)
            if agg is None:
                tuples[key] = [when, when, 1]
            else:
                if when < agg[0]:
                    agg[0] = when
                elif when > agg[1]:  # first <= last: one of the two at most
                    agg[1] = when
                agg[2] += 1
            n += 1
            if when > last:  # noqa: PLR1730
                last = when
        if n:
            s = self.sensors.setdefault(sensor, [0, 0])
            s[0] += n
            s[1] = max(s[1], last)
            self.pending += n

    def add_answer(
        self, data: bytes, when: int, sensor: str, bailiwick: str = ""
    ) -> tuple[int, bool] | None:
        """A DNS response on the wire: (observations, was NXDOMAIN); None if malformed."""
        try:
            obs, nx = from_wire(data, when, sensor)
        except ValueError:
            return None
        if bailiwick:
            obs = [o._replace(bailiwick=bailiwick) for o in obs]
        self.add(obs)
        if nx is not None:
            self.add_nxdomain(nx)
        return len(obs), nx is not None

    def add_nxdomain(self, nx: Nxdomain) -> None:
        s = self.sensors.setdefault(nx.sensor, [0, 0])
        s[1] = max(s[1], nx.time)
        if not self.keep_nxdomain:
            return
        agg = self.nx.get((nx.rrname, nx.rrtype))
        if agg is None:
            self.nx[(nx.rrname, nx.rrtype)] = [nx.time, nx.time, 1]
        else:
            agg[0] = min(agg[0], nx.time)
            agg[1] = max(agg[1], nx.time)
            agg[2] += 1

    def __len__(self) -> int:
        return len(self.tuples) + len(self.nx)

    def flush(
        self,
        store: PdnsStore,
        progress: FileProgress | None = None,
        mark: WriterMark | None = None,
    ) -> int:
        """Write what was gathered (with *progress* or *mark*, in the same transaction);
        return how many tuples were written."""
        if not (self.tuples or self.nx or self.sensors or progress or mark):
            return 0
        n = len(self.tuples)
        sensors = {k: (v[0], v[1]) for k, v in self.sensors.items()}
        store.write(self.tuples, self.nx, sensors, progress, mark)
        self.tuples, self.nx, self.sensors, self.pending = {}, {}, {}, 0
        return n
