"""The local spool of batches waiting for ClickHouse: bounded, and its messages say
whose batches it keeps."""

from __future__ import annotations

import logging
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
