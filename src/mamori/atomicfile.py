"""Replacing files so that a crash leaves the old version or the new one, never half of one.

The new content goes to a temporary file in the same directory (same file system,
so the rename is atomic), is flushed and fsync'ed, renamed over the target
(POSIX ``rename(2)``), and the directory is fsync'ed so that the rename itself
survives a power loss. A process killed at any point (SIGKILL) leaves the old
file in place and at most a stray ``.NAME.*.tmp`` beside it; readers never see
a partly written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO, cast


def fsync_dir(directory: Path) -> None:
    """Make the directory entries of *directory* (a rename, a new file) durable.
    Raises OSError."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path, perm: int = 0o644) -> Iterator[TextIO]:
    """Write the new *path* (UTF-8 text) through the file yielded; it replaces *path*
    when the block ends without an exception, with permissions *perm*. On an exception
    the old file is untouched and the temporary file removed. Raises OSError (disk
    full, permissions)."""
    with _replacing(path, perm, binary=False) as f:
        yield cast(TextIO, f)


@contextlib.contextmanager
def replacing_bytes(path: Path, perm: int = 0o644) -> Iterator[BinaryIO]:
    """``replacing`` for binary content."""
    with _replacing(path, perm, binary=True) as f:
        yield cast(BinaryIO, f)


@contextlib.contextmanager
def _replacing(path: Path, perm: int, binary: bool) -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        f: IO[Any] = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, perm)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes | str, perm: int = 0o644) -> None:
    """Replace *path* with *data* (str: UTF-8) as ``replacing`` does. Raises OSError."""
    with replacing_bytes(path, perm) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def install(src: Path, dst: Path) -> None:
    """Rename *src* (written and fsync'ed by the caller) over *dst* and make the rename
    durable. Raises OSError."""
    os.replace(src, dst)
    fsync_dir(dst.parent)
