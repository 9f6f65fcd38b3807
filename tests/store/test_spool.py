"""The local spool of batches waiting for ClickHouse: bounded, and its messages say
whose batches it keeps."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mamori.store.pdns_spool import Spool


@pytest.mark.parametrize("label", ["query log", "passive DNS"])
def test_a_full_spool_says_whose_batch_it_drops(
    tmp_path: Path, label: str, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool", 200, label)
    assert spool.append({"rows": ["x" * 10]}, 1)
    with caplog.at_level(logging.ERROR, "mamori.store.pdns_spool"):
        assert not spool.append({"rows": [str(i) * 50 for i in range(50)]}, 50)
    assert (spool.dropped, spool.dropped_items, len(spool)) == (1, 50, 1)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [label]
    assert "a batch of 50 items is dropped" in caplog.records[0].getMessage()


def test_metrics_show_what_waits_on_disk_and_what_was_dropped(tmp_path: Path) -> None:
    from mamori import config
    from mamori.control.view import Runtime
    from mamori.store.querylog_open import spool_dir
    from mamori.web.metrics import MamoriCollector

    p = tmp_path / "m.toml"
    p.write_text(
        f'[upstream]\nservers = ["127.0.0.1:5300"]\n[store]\npath = "{tmp_path / "m.db"}"\n'
        'url = "clickhouse://127.0.0.1:9/q"\nspool_size = 600\n'
    )
    cfg = config.load(p)
    rt = Runtime()
    spool = rt.spools["querylog"] = Spool(spool_dir(cfg), cfg.store.spool_size, "query log")
    assert spool.append({"rows": ["a" * 20]}) and spool.append({"rows": ["b" * 20]})
    assert not spool.append({"rows": [os.urandom(2000).hex()]})  # does not fit

    def values() -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels["store"]): s.value
            for fam in MamoriCollector(cfg, rt).collect()
            for s in fam.samples
            if s.name.startswith("mamori_spool")
        }

    assert values() == {
        ("mamori_spool_batches", "querylog"): 2,
        ("mamori_spool_bytes", "querylog"): spool.bytes,
        ("mamori_spool_rejected_batches", "querylog"): 0,
        ("mamori_spool_dropped_total", "querylog"): 1,
    }
    first, second = spool.files()
    spool.set_aside(first)  # refused by the server: kept aside, no longer waiting
    got = values()
    assert got[("mamori_spool_batches", "querylog")] == 1
    assert got[("mamori_spool_rejected_batches", "querylog")] == 1
    spool.remove(second)
    assert values()[("mamori_spool_batches", "querylog")] == 0
