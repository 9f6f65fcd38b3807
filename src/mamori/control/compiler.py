"""Compiled policy files: where they live, how they are made, which one is current.

Every applied policy zone is compiled once (policy/compiled.py) into
``<store dir>/policy/<zone>.<n>.cz``, written to a temporary name and renamed,
so a reader never sees half a file. ``manifest.json`` beside them records,
per zone, the current file and the *source* it was compiled from (a signature
of the zone file and journal, the settings that change the result, the format
version): at start a zone whose source has not changed is mapped at once,
without parsing its file again.

A zone whose text file is the whole truth (a local RPZ file, a feed's zone)
is compiled in a child process (``python -m mamori.control.compiler``): the
parse of a million-line file stays out of the service's memory and off its
event loop. Zones the control plane holds anyway (transferred and published
ones) are compiled from memory, step by step on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mmap
import os
import sys
import time
from pathlib import Path
from typing import Any

from mamori.atomicfile import replacing_bytes, write_atomic
from mamori.config import RpzConfig
from mamori.policy.compiled import (
    FORMAT_VERSION,
    CompiledZone,
    compile_parts_steps,
    compile_zone,
)
from mamori.policy.rules import LoadedZone, ZoneError
from mamori.steps import drive

log = logging.getLogger("mamori.rpz")

CHILD_TIMEOUT = 1800.0  # seconds a compile child may take


def source_of(rpz: RpzConfig) -> str:
    """What a zone's compiled form depends on: its file (and journal), its name, on_error,
    the compiled format. Changes when any of them does ("" for a file not there)."""
    assert rpz.file is not None
    parts = [f"v{FORMAT_VERSION}", rpz.name, rpz.on_error, _stat(rpz.file)]
    if rpz.primary:
        parts.append(_stat(Path(f"{rpz.file}.jnl")))
    return "|".join(parts)


def _stat(p: Path) -> str:
    p = Path(os.path.abspath(p))  # the same file whatever directory mamori started in
    try:
        st = os.stat(p)
    except OSError:
        return f"{p}:-"
    return f"{p}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


class PolicyFiles:
    """The directory of compiled zones and its manifest."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(os.path.abspath(directory))
        self.manifest_path = directory / "manifest.json"
        self.current: dict[str, dict[str, str]] = self._read()
        self._n = int(time.time() * 1000)
        self._identity: dict[str, str] = {}  # file -> its stat identity when made or checked

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def reusable(self, name: str, source: str) -> str | None:
        """The compiled file of *name* if it was made from *source* and is intact."""
        entry = self.current.get(name)
        if not entry or entry.get("source") != source:
            return None
        path = entry.get("file", "")
        problem = self.intact(path)
        if problem is not None:
            log.warning("compiled zone %s unusable (%s): compiling again", path, problem)
            return None
        return path

    def intact(self, path: str) -> str | None:
        """None if *path* maps and its checksum verifies (then its identity is noted for
        ``changed``); else what is wrong with it. Reads the whole file."""
        identity = _stat(Path(path))
        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                zone = CompiledZone(mm)
                zone.verify()
                del zone  # its views of the mapping must go before the mapping closes
        except (OSError, ValueError, BufferError) as e:
            return str(e) or type(e).__name__
        self._identity[path] = identity
        return None

    def changed(self, path: str) -> bool:
        """Whether *path* was replaced, truncated, rewritten or deleted since it was made or
        last checked (inode, size and modification time; one stat)."""
        known = self._identity.get(path)
        return known is not None and known != _stat(Path(path))

    def forget(self, name: str) -> None:
        """No compiled file of *name* may be reused: the next compile makes a new one."""
        self.current.pop(name, None)

    def new_path(self, name: str) -> Path:
        self._n += 1
        return self.dir / f"{name.rstrip('.') or 'root'}.{self._n}.cz"

    def write(self, name: str, parts: list[bytes]) -> str:
        """Store a compiled zone (its parts, in order) for *name* atomically; its path.

        Blocking file I/O: run it in a thread (it releases the GIL while writing).
        """
        path = self.new_path(name)
        with replacing_bytes(path) as f:
            f.writelines(parts)
        return str(path)

    def record(self, name: str, path: str, source: str) -> None:
        """Make *path* the current file of *name* (the manifest is rewritten atomically)."""
        self.current[name] = {"file": path, "source": source}
        self._identity[path] = _stat(Path(path))
        write_atomic(self.manifest_path, json.dumps(self.current, indent=1, sort_keys=True))

    def prune(self, keep: set[str]) -> None:
        """Delete compiled files not in *keep* (mappings of deleted files stay valid)."""
        if not self.dir.is_dir():
            return
        for p in self.dir.glob("*.cz*"):
            if str(p) not in keep:
                with contextlib.suppress(OSError):
                    p.unlink()


async def compile_loaded(files: PolicyFiles, zone: LoadedZone, source: str) -> str:
    """Compile a zone held in memory, step by step on the loop; write it; its path."""
    parts: list[bytes] = await drive(compile_parts_steps(zone, source), f"zone {zone.name} compile")
    path: str = await asyncio.to_thread(files.write, zone.name, parts)
    return path


async def compile_file(files: PolicyFiles, rpz: RpzConfig, source: str) -> dict[str, Any]:
    """Compile a zone file in a child process. Its verdict: ``{"ok": true, "file", "serial",
    "rules", "skipped", "seconds"}`` or ``{"ok": false, "error"}`` (never raises)."""
    assert rpz.file is not None
    out = files.new_path(rpz.name)
    files.dir.mkdir(parents=True, exist_ok=True)
    args = [str(rpz.file), rpz.name, rpz.on_error, "1" if rpz.primary else "0", str(out), source]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mamori.control.compiler", *args,
            stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as e:
        return {"ok": False, "error": f"cannot start the compiler: {e}"}
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        with contextlib.suppress(OSError):
            out.unlink()
        raise
    lines = stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        verdict: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        verdict = {"ok": False, "error": f"compiler exited {proc.returncode}"}
    return verdict


def main(argv: list[str]) -> int:
    """The child: load one zone file (+ journal), compile, write; one JSON line on stdout."""
    from mamori.config import RpzConfig as Rpz
    from mamori.control.zoneload import load_zone
    from mamori.logs import setup_logging
    from mamori.threads import background_process

    setup_logging(os.environ.get("MAMORI_LOG_LEVEL", "warning"))
    background_process()  # never slow the DNS loop down, even on its own core
    file, name, on_error, journal, out, source = argv
    t0 = time.monotonic()
    rpz = Rpz(name=name, file=Path(file), on_error=on_error, primary=_fake_primary(journal))
    try:
        zone = load_zone(rpz)
        data = compile_zone(zone, source)
    except (ZoneError, OSError, ValueError) as e:
        print(json.dumps({"ok": False, "error": str(e)}), flush=True)
        return 0
    try:
        write_atomic(Path(out), data)
    except OSError as e:  # e.g. a full disk: one line, not a traceback
        print(json.dumps({"ok": False, "error": f"cannot write {out}: {e.strerror or e}"}))
        return 0
    verdict = {
        "ok": True,
        "file": out,
        "serial": zone.serial,
        "rules": zone.rule_count,
        "skipped": zone.skipped[:20],
        "nskipped": len(zone.skipped),
        "soa": zone.soa is not None,
        "seconds": round(time.monotonic() - t0, 3),
    }
    print(json.dumps(verdict), flush=True)
    return 0


def _fake_primary(journal: str) -> tuple[Any, ...]:
    """A non-empty ``primary`` makes the loader replay the journal (transferred zones)."""
    if journal != "1":
        return ()
    from mamori.config import Endpoint

    return (Endpoint("127.0.0.1", 53),)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
