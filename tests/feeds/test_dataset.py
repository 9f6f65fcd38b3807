"""Provenance per entry, expiry after delist_after, datasets as unions of feeds."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mamori import config
from mamori.errors import ConfigError, StoreError
from mamori.feeds.dataset import ALLOW, LIST, FeedDB, db_path, store_lock
from mamori.feeds.normalize import Entry
from mamori.feeds.parsers import FeedError
from mamori.feeds.sources import compile_datasets, update
from mamori.policy import zone
from tests.support.wait import until

DAY = 86400
T0 = 1_700_000_000


def _cfg(tmp_path: Path, extra: str = "") -> config.Config:
    text = f"""
[upstream]
servers = ["127.0.0.1:53"]
[store]
path = "{tmp_path / "store" / "mamori.sqlite"}"
[[feed]]
name = "phish"
path = "phish.txt"
format = "domains"
category = "phishing"
delist_after = {2 * DAY}
[[feed]]
name = "cc"
path = "cc.csv"
format = "csv"
category = "botnet-cc"
[[feed]]
name = "miners"
path = "miners.txt"
format = "hosts"
category = "cryptominer"
enabled = false
[[dataset]]
name = "threats"
categories = ["phishing", "botnet-cc"]
publish = true
{extra}
"""
    (tmp_path / "m.toml").write_text(text)
    return config.load(tmp_path / "m.toml")


def _rules(path: Path, origin: str) -> set[str]:
    return {r.owner for r in zone.load(path, origin).rules()}


def test_provenance_first_listed_last_seen_and_delisting(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    phish = cfg.feeds[0]
    (tmp_path / "phish.txt").write_text("login-bank.example\nverify-acct.example\n")
    r = update(phish, cfg.store, now=T0)
    assert (r.entries, r.added, r.removed) == (2, 2, 0)
    (tmp_path / "phish.txt").write_text("verify-acct.example\nnew-phish.example\n")
    r = update(phish, cfg.store, now=T0 + DAY)
    # login-bank left the source one day ago: still listed (delist_after = 2 days)
    assert (r.entries, r.added, r.removed, r.lingering) == (3, 1, 0, 1)
    with FeedDB(db_path(cfg.store.path)) as db:
        (gone,) = db.provenance("login-bank.example")
        assert gone.first_listed == T0 and gone.delisted == T0 + DAY and gone.listed
        (kept,) = db.provenance("verify-acct.example")
        assert kept.first_listed == T0 and kept.last_seen == T0 + DAY and kept.delisted is None
    r = update(phish, cfg.store, now=T0 + 3 * DAY + 1)
    assert (r.entries, r.added, r.removed) == (2, 0, 1)
    zone_file = config.feed_zone(phish, cfg.store).file
    assert zone_file is not None
    assert _rules(zone_file, "phish.feeds.mamori.") == {"verify-acct.example", "new-phish.example"}
    with FeedDB(db_path(cfg.store.path)) as db:
        (gone,) = db.provenance("login-bank.example")
        assert not gone.listed and gone.last_seen == T0 + DAY
    # back in the source: listed again, first_listed kept
    (tmp_path / "phish.txt").write_text("verify-acct.example\nlogin-bank.example\n")
    r = update(phish, cfg.store, now=T0 + 4 * DAY)
    assert r.added == 1
    with FeedDB(db_path(cfg.store.path)) as db:
        (back,) = db.provenance("login-bank.example")
        assert back.listed and back.first_listed == T0 and back.delisted is None


def test_reason_and_reference_come_from_the_csv_columns(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    (tmp_path / "cc.csv").write_text(
        "id,dateadded,url,url_status,threat,tags,urlhaus_link\n"
        '1,2026-11-01,http://c2.example/gate.php,online,botnet_cc,"Mozi",'
        "https://urlhaus.abuse.ch/url/1/\n"
    )
    update(cfg.feeds[1], cfg.store, now=T0)
    with FeedDB(db_path(cfg.store.path)) as db:
        (p,) = db.provenance("c2.example")
    assert (p.reason, p.reference) == ("botnet_cc", "https://urlhaus.abuse.ch/url/1/")


def test_dataset_is_the_union_of_its_categories_feeds(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    (tmp_path / "phish.txt").write_text("login-bank.example\n*.phish-kit.example\n")
    (tmp_path / "cc.csv").write_text("host\nc2.example\nlogin-bank.example\n198.51.100.7\n")
    (tmp_path / "miners.txt").write_text("0.0.0.0 coin.example\n")
    for feed in cfg.feeds:
        if feed.enabled:
            update(feed, cfg.store, now=T0)
    [(name, serial, changed, n)] = compile_datasets(cfg)
    assert (name, serial, changed, n) == ("threats", 1, True, 4)
    ds_zone = next(z for z in cfg.rpz if z.name == "threats.datasets.mamori.")
    assert ds_zone.publish and not ds_zone.apply
    assert ds_zone.file is not None
    assert _rules(ds_zone.file, ds_zone.name) == {
        "login-bank.example",
        "*.phish-kit.example",
        "c2.example",
        "32.7.100.51.198.rpz-ip",
    }
    assert compile_datasets(cfg)[0][1:3] == (1, False)  # nothing changed: same serial
    assert compile_datasets(cfg, {"miners"}) == []  # not one of its feeds


def test_a_refused_update_is_remembered_and_keeps_the_data(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    (tmp_path / "phish.txt").write_text("login-bank.example\n")
    update(cfg.feeds[0], cfg.store, now=T0)
    (tmp_path / "phish.txt").write_text("<html>\n<body>\nnot found\n</body>\n</html>\n")
    with pytest.raises(FeedError):
        update(cfg.feeds[0], cfg.store, now=T0 + 60)
    with FeedDB(db_path(cfg.store.path)) as db:
        (last, first) = db.updates("phish")
        assert not last[1] and "no usable entry" in last[3] and first[1]
        assert db.last_good("phish") == T0
        assert db.counts("phish") == (1, 0)


def test_dataset_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.feeds.*no \[\[feed\]\] named nope"):
        _cfg(tmp_path, '[[dataset]]\nname = "x"\nfeeds = ["nope"]\n')
    with pytest.raises(ConfigError, match=r"dataset\.feeds.*no enabled feed"):
        _cfg(tmp_path, '[[dataset]]\nname = "x"\nfeeds = ["miners"]\n')
    with pytest.raises(ConfigError, match=r"feed\.publish_keys.*not in \[publish\] keys"):
        config.loads(
            '[upstream]\nservers = ["127.0.0.1:53"]\n[[feed]]\nname = "a"\npath = "a"\n'
            'format = "hosts"\npublish = true\npublish_keys = ["k1"]\n',
            tmp_path / "x.toml",
        )


def test_a_feeds_db_from_before_modifiers_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "feeds.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE entries (feed TEXT NOT NULL, rule INTEGER NOT NULL, kind TEXT NOT NULL,"
        " value TEXT NOT NULL, first_listed INTEGER NOT NULL, delisted INTEGER,"
        " listed INTEGER NOT NULL, reason TEXT NOT NULL DEFAULT '',"
        " reference TEXT NOT NULL DEFAULT '', PRIMARY KEY (feed, rule, kind, value))"
        " WITHOUT ROWID;"
        "CREATE INDEX entries_value ON entries (value);"
        f"INSERT INTO entries VALUES ('ag', 0, 'domain', 'a.example', {T0}, NULL, 1, 'r', 'x');"
        f"INSERT INTO entries VALUES ('ag', 1, 'domain', 'b.example', {T0}, NULL, 1, '', '');"
    )
    old.close()
    with FeedDB(path) as db:
        (a,) = db.provenance("a.example")
        assert (a.first_listed, a.reason, a.reference, a.modifiers) == (T0, "r", "x", "")
        db.record("ag", [Entry("domain", "a.example", modifiers="important")], now=T0 + 1)
        assert {(p.modifiers, p.listed) for p in db.provenance("a.example")} == {
            ("important", True),
            ("", False),
        }
        assert db.listed(["ag"], ALLOW) == []  # b.example left the source: not listed


def test_a_dataset_resolves_its_feeds_rules_together(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        '[[feed]]\nname = "ag1"\npath = "ag1.txt"\nformat = "adblock"\ncategory = "phishing"\n'
        '[[feed]]\nname = "ag2"\npath = "ag2.txt"\nformat = "adblock"\ncategory = "phishing"\n',
    )
    (tmp_path / "phish.txt").write_text("login-bank.example\n")
    (tmp_path / "cc.csv").write_text("host\nc2.example\n")
    (tmp_path / "ag1.txt").write_text("@@||a.example^\n@@||b.example^\n||x.example^\n")
    (tmp_path / "ag2.txt").write_text("||a.example^$important\n||b.example^\n")
    for feed in cfg.feeds:
        if feed.enabled:
            update(feed, cfg.store, now=T0)
    compile_datasets(cfg)
    ds_zone = next(z for z in cfg.rpz if z.name == "threats.datasets.mamori.")
    assert ds_zone.file is not None
    lines = [ln for ln in ds_zone.file.read_text().splitlines() if ln and ln[0] not in ";$@"]
    assert "a.example CNAME ." in lines and "b.example CNAME rpz-passthru." in lines
    owners = [ln.split()[0] for ln in lines]
    assert len(owners) == len(set(owners))


def _lock_waiters(lock: Path) -> int:
    """Processes or threads waiting for the flock on *lock* (Linux /proc/locks)."""
    st = lock.stat()
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for ln in lines if "->" in ln and "FLOCK" in ln and dev in ln)


def test_a_dataset_is_written_from_the_newest_entries_whichever_writer_ends_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers at once, as ``mamori serve``'s start-time compile and ``mamori feeds
    update``: the one that read the entries before the other changed them must not
    write its older dataset over the newer one (found by the Unbound fleet test: a
    feed's removed name came back in the published dataset, under a higher serial)."""
    cfg = _cfg(tmp_path)
    phish = cfg.feeds[0]
    (tmp_path / "phish.txt").write_text("login-bank.example\nverify-acct.example\n")
    update(phish, cfg.store, now=T0)
    compile_datasets(cfg)
    read_once, go = threading.Event(), threading.Event()
    real = FeedDB.listed

    def listed(self: FeedDB, feeds: list[str], rule: int = LIST) -> list[Entry]:
        rows = real(self, feeds, rule)
        if threading.current_thread().name == "stale" and not read_once.is_set():
            read_once.set()  # the stale writer has read the entries: hold it there
            go.wait(20)
        return rows

    monkeypatch.setattr(FeedDB, "listed", listed)
    errors: list[BaseException] = []

    def run(*steps: Callable[[], object]) -> None:
        try:
            for step in steps:
                step()
        except BaseException as e:
            errors.append(e)

    stale = threading.Thread(target=run, args=(lambda: compile_datasets(cfg),), name="stale")
    stale.start()
    assert read_once.wait(20)
    (tmp_path / "phish.txt").write_text(
        "login-bank.example\nverify-acct.example\nnew-phish.example\n"
    )
    fresh = threading.Thread(
        target=run,
        args=(lambda: update(phish, cfg.store, now=T0 + 60),
              lambda: compile_datasets(cfg, {"phish"})),
    )  # fmt: skip
    fresh.start()
    lock = db_path(cfg.store.path).with_name(".lock")
    # the fresh writer either waits for the lock (fixed) or is done (the race)
    until(lambda: not fresh.is_alive() or _lock_waiters(lock) > 0, 20)
    go.set()
    stale.join(20)
    fresh.join(20)
    assert not stale.is_alive() and not fresh.is_alive() and not errors, errors
    ds = config.dataset_zone(cfg.datasets[0], cfg.store).file
    assert ds is not None
    assert _rules(ds, "threats.datasets.mamori.") == {
        "login-bank.example",
        "verify-acct.example",
        "new-phish.example",
    }
    # and a second compile finds nothing to change: the zone is what the entries say
    assert compile_datasets(cfg)[0][2] is False


def test_the_store_lock_cannot_be_opened_names_the_file(tmp_path: Path) -> None:
    store = tmp_path / "store" / "mamori.sqlite"
    store.parent.mkdir()
    (store.parent / "feeds").write_text("a file where the feeds directory should be\n")
    lock = store_lock(store)
    with pytest.raises(StoreError, match=r"cannot open the feed store's lock .*feeds/\.lock"):
        lock.__enter__()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as two users")
def test_a_lock_file_left_by_root_does_not_lock_the_service_user_out() -> None:
    """``sudo mamori feeds update`` on the store of a service running as its own user
    creates the lock file as root (0644): the service must still take the lock."""
    base = Path(tempfile.mkdtemp(prefix="mamori-lock-"))
    try:
        base.chmod(0o755)
        store = base / "store" / "mamori.sqlite"
        with store_lock(store):  # as root: creates store/feeds/.lock, root-owned
            pass
        for d in (store.parent, store.parent / "feeds"):
            os.chown(d, 65534, 65534)  # the service user's store
        pid = os.fork()
        if pid == 0:  # the service user
            code = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                with store_lock(store):
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        shutil.rmtree(base)
