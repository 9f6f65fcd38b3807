from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str) -> str:
    """Path of a Debian tool the test needs; skip locally, fail in CI when missing."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        msg = f"{name} is not installed (scripts/install-test-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def chdb_session(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A current ClickHouse engine in-process (chdb), one per test process (chdb allows
    one); tests isolate themselves by database."""
    chdb = pytest.importorskip("chdb.session", reason="chdb (a current ClickHouse) not installed")
    s = chdb.Session(str(tmp_path_factory.mktemp("chdb")))
    yield s
    s.close()


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One Debian clickhouse-server (18.16) for the session, on free 127.0.0.1 ports with
    its own config and data under a temporary directory; stopped by PID at the end.
    Tests isolate themselves by database (``clickhouse_db``)."""
    from tests.support import clickhouse

    if clickhouse.BINARY is None:
        if os.environ.get("CI"):
            pytest.fail(clickhouse.MISSING)
        pytest.skip(clickhouse.MISSING)
    server = clickhouse.ClickHouse(tmp_path_factory.mktemp("clickhouse")).start()
    yield server
    server.stop()


@pytest.fixture
def clickhouse_url(clickhouse_server):  # type: ignore[no-untyped-def]
    """A ``clickhouse://`` URL of the session's server with a database of this test's own."""
    import uuid

    return clickhouse_server.url.rsplit("/", 1)[0] + f"/t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def clickhouse_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two Debian clickhouse-server processes forming the two-shard cluster
    ``tests.support.clickhouse.CLUSTER`` (each knows both); stopped by PID at the end."""
    from tests.support import clickhouse

    if clickhouse.BINARY is None:
        if os.environ.get("CI"):
            pytest.fail(clickhouse.MISSING)
        pytest.skip(clickhouse.MISSING)
    root = tmp_path_factory.mktemp("chcluster")
    a, b = clickhouse.ClickHouse(root / "a"), clickhouse.ClickHouse(root / "b")
    a.shards = b.shards = [("127.0.0.1", a.tcp), ("127.0.0.1", b.tcp)]
    try:
        yield [a.start(), b.start()]
    finally:
        a.stop()
        b.stop()
