"""Counters summed over workers never go down when a worker is replaced."""

from __future__ import annotations

from mamori.control.supervisor import retire
from mamori.control.view import merge_upstreams, sum_stats
from mamori.resolver.dataplane import Snapshot
from mamori.resolver.upstream import LATENCY_BUCKETS, UpstreamHealth


def _snap(worker: int, queries: int, upstream_queries: int) -> Snapshot:
    latency = (upstream_queries,) + (0,) * len(LATENCY_BUCKETS)
    up = UpstreamHealth("u", True, 0.01, upstream_queries, 1, 0, latency, 0.5)
    return Snapshot(worker, 100 + worker, 0.0, 3, {"queries": queries}, 10, 2000, 1, 2, 0, (up,))


def test_an_exited_workers_counters_stay_in_the_sums_and_its_gauges_do_not() -> None:
    one, two = _snap(1, 50, 5), _snap(2, 70, 7)
    before = sum_stats([one, two])
    retired = retire(None, one)  # worker 1 died; its replacement starts from zero
    after = sum_stats([_snap(1, 0, 0), two, retired])
    assert after["queries"] == before["queries"] == 120
    assert after["cache_entries"] == before["cache_entries"] == 20  # gauges: live workers only
    assert sum_stats([retired])["cache_entries"] == 0
    [u] = merge_upstreams([_snap(1, 0, 0), two, retired])
    assert (u.queries, u.errors, u.latency[0]) == (12, 3, 12)
    again = retire(retired, _snap(1, 30, 3))  # and it died once more
    assert sum_stats([again])["queries"] == 80 and again.events_dropped == 4
