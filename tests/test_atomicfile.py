"""Files replaced whole: a writer killed with SIGKILL at random points never leaves half a
file, and a feed cache's validators left unreadable (by a crash of an older version) make
the feed be fetched whole instead of failing its update."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mamori.atomicfile import replacing, write_atomic
from mamori.config import FeedConfig
from mamori.feeds.sources import read
from tests.support.feedserver import FeedServer

KILLS = 20

# Rewrites the file as fast as it can: version i is {"v": i, "pad": ...} (~1 MB).
WRITER = """
import json, sys
from pathlib import Path
from mamori.atomicfile import write_atomic
path, start = Path(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
for i in range(start, start + 100_000):
    write_atomic(path, json.dumps({"v": i, "pad": "x" * (1 << 20)}))
"""


def test_a_writer_killed_at_random_points_leaves_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, json.dumps({"v": 0, "pad": ""}))
    rng = random.Random(5)
    last = 0
    for k in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str((k + 1) * 100_000)],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        doc = json.loads(path.read_text())  # old or new, never half
        assert doc["v"] >= last
        last = doc["v"]
    assert last > 0  # the writers got to write
    # what kills leave: temporary files beside it, never the file itself half-written
    assert all(p.name.startswith(".state.json.") for p in tmp_path.iterdir() if p != path)


def test_an_exception_while_writing_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "zone"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), replacing(path) as f:
        f.write("new, half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["zone"]


def test_an_unreadable_cache_meta_means_the_feed_is_fetched_whole(tmp_path: Path) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "list.txt").write_bytes(b"a.example\nb.example\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "t.data").write_bytes(b"old.example\n")
    (cache / "t.meta").write_text('{"etag": "\\"abc')  # cut short
    srv = FeedServer(tmp_path / "www")
    feed = FeedConfig(name="t", url=f"http://127.0.0.1:{srv.port}/list.txt", format="domains")
    try:
        result, how = read(feed, cache)
    finally:
        srv.close()
    assert how == "http 200"
    assert {e.value for e in result.entries} == {"a.example", "b.example"}
    assert json.loads((cache / "t.meta").read_text())["etag"]
