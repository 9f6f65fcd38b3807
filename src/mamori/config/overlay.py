"""The console's overlay: feeds, groups and brands edited from the console or the REST API.

mamori never rewrites the user's TOML file (its comments and layout stay as
written). What the console and ``/api/v1/feeds`` / ``/api/v1/groups`` change is
kept in a file mamori owns, ``<store dir>/console.toml``, written atomically
(temporary file, fsync, rename), and merged by the loader (``load.py``):

- ``[[feed]]``, ``[[group]]`` and ``[[brand]]`` tables there are appended to the user's;
- ``[override.feed.NAME] enabled = true|false`` switches one of the user's own
  feeds on or off (the user's table itself is left alone);
- a name defined in both files: the user's TOML wins; ``mamori check`` says the
  console's entry is shadowed;
- an error in the overlay names the overlay file, line and key like any config
  error; ``mamori serve`` (and its reloads) log it and run with the user's TOML
  alone, so a damaged overlay never stops the service.

This module holds the file format (read, write, TOML text); the merge is in
``load.py`` (it owns the tables' converters and cross-checks).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mamori import atomicfile
from mamori.errors import ConfigError

OVERLAY_NAME = "console.toml"
HEADER = (
    "# Feeds and groups added or changed from the mamori console and REST API.\n"
    "# Written by mamori (do not edit while it runs); your own TOML file is never changed.\n"
    "# Entries here are merged after your file's; a name your file defines wins.\n"
)
TOP_KEYS = ("feed", "group", "brand", "override")


def overlay_path(store_dir: Path) -> Path:
    """Where the console's edits are kept: ``<store dir>/console.toml``."""
    return store_dir / OVERLAY_NAME


def uploads_dir(store_dir: Path) -> Path:
    """Feed files uploaded from the console (``feeds/uploads/NAME.txt``)."""
    return store_dir / "feeds" / "uploads"


@dataclass(frozen=True)
class Origin:
    """Where an effective ``[[feed]]`` or ``[[group]]`` came from."""

    file: str
    line: int | None
    overlay: bool  # True: the console's file (console.toml)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} (console)" if self.overlay else where


@dataclass
class Provenance:
    """What the loader made of the overlay (``mamori check``, the API).

    *origins*: ("feed" | "group", name) -> Origin of the entry in force;
    *shadowed*: console entries a user's entry of the same name hides;
    *overrides*: the user's feeds switched on/off from the console (name -> enabled);
    *stale*: overrides naming no feed of the user's file;
    *error*: the overlay's error when it was ignored (the service runs without it).
    """

    path: Path
    origins: dict[tuple[str, str], Origin] = field(default_factory=dict)
    shadowed: list[tuple[str, str, Origin]] = field(default_factory=list)
    overrides: dict[str, bool] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    error: ConfigError | None = None


def read_text(path: Path) -> str | None:
    """The overlay's text, or None when there is none; ConfigError if unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(str(path), None, "", f"cannot read: {e.strerror}") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), None, "", "not valid UTF-8") from None


def read_doc(path: Path) -> dict[str, Any]:
    """The overlay as a TOML document (empty when there is none); ConfigError if bad."""
    import tomllib

    text = read_text(path)
    if not text:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), None, "", f"TOML syntax error: {e}") from e


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("not a finite number")
        return repr(v)
    if isinstance(v, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise ValueError("not a Unicode string (a lone surrogate)")
        # an ASCII JSON string is a TOML basic string, but for DEL, which TOML escapes
        return json.dumps(v).replace("\x7f", "\\u007f")
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {type(v).__name__} values")


def _key(k: str) -> str:
    return k if k.replace("-", "").replace("_", "").isalnum() and k.isascii() else json.dumps(k)


def dumps(doc: dict[str, Any]) -> str:
    """The overlay document as TOML text (feeds, groups, brands, then overrides)."""
    out = [HEADER]
    for section in ("feed", "group", "brand"):
        for table in doc.get(section, []):
            out.append(f"\n[[{section}]]\n")
            out.extend(f"{_key(k)} = {_value(v)}\n" for k, v in table.items())
    for kind, entries in sorted(doc.get("override", {}).items()):
        for name, table in sorted(entries.items()):
            out.append(f"\n[override.{_key(kind)}.{_key(name)}]\n")
            out.extend(f"{_key(k)} = {_value(v)}\n" for k, v in table.items())
    return "".join(out)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace *path* with *data*: a temporary file beside it, fsync, rename, fsync the
    directory (a crash leaves the old file or the new one, never half of one)."""
    atomicfile.write_atomic(path, data, mode)


def write_doc(path: Path, doc: dict[str, Any]) -> None:
    write_atomic(path, dumps(doc).encode("utf-8"))
