"""The text of list, feed and zone files: byte-order marks, UTF-16, bytes that are not UTF-8.

One rule for every file mamori reads as lines (feeds in every format,
allowlists, policy zone files), from disk or over HTTP:

- a UTF-8 byte-order mark (``EF BB BF``, what Windows editors and
  spreadsheets' "CSV UTF-8" write) at the start of the file is ignored;
- a UTF-16 or UTF-32 byte-order mark (``FF FE`` / ``FE FF``, ``FF FE 00 00`` /
  ``00 00 FE FF``: Notepad's "Unicode", PowerShell 5's ``>``) selects that
  encoding and byte order, and the file is decoded (RFC 2781);
- anything else is read as UTF-8 (RFC 3629). Bytes that are not UTF-8
  (Latin-1, Windows-1252 ...) are not guessed at: each is kept as a
  surrogate escape (PEP 383, ``U+DC80``-``U+DCFF``), so that the reader can
  reject the line that holds one with its line and column (``bad_bytes``).
  In a comment they do no harm.

Lines end at LF, CRLF or CR only (``lines``), not at the other characters
``str.splitlines`` breaks at (VT, FF, NEL, U+2028 ...), which may sit inside
a CSV field or a reason. Pure functions: no I/O.
"""

from __future__ import annotations

import codecs
import io
import re

ERRORS = "surrogateescape"  # the error handler to open files with, next to encoding_of()

# Longest first: a UTF-32 LE mark starts with the UTF-16 LE one.
_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ESCAPED = re.compile("[\udc80-\udcff]")


def encoding_of(head: bytes) -> str:
    """The codec for a file that starts with *head* (its first 4 bytes suffice).

    ``"utf-32"`` or ``"utf-16"`` when the file starts with their byte-order
    mark (the codec reads the byte order from it and drops it), else
    ``"utf-8-sig"`` (UTF-8; drops a UTF-8 byte-order mark if there is one).
    """
    for mark, codec in _MARKS:
        if head.startswith(mark):
            return codec
    return "utf-8-sig"


def decode(data: bytes) -> str:
    """A whole file's text by the rule above.

    Raises UnicodeDecodeError only for a file that a UTF-16/32 byte-order
    mark announces and that is not valid in that encoding (a cut-off last
    character ...); bytes that are not UTF-8 in a UTF-8 file never raise
    (they come back as surrogate escapes, see ``bad_bytes``).
    """
    return data.decode(encoding_of(data[:4]), ERRORS)


def lines(text: str) -> list[str]:
    """*text* split after each LF, CRLF or CR; every line keeps its end."""
    return io.StringIO(text, newline="").readlines()


def bad_bytes(text: str) -> str | None:
    """``"byte 0xE9 at column 4 is not UTF-8"`` for the first byte of *text* (a line)
    that was not UTF-8 (a surrogate escape left by ``decode``), or None.

    The column counts characters from 1.
    """
    if text.isascii():
        return None
    m = _ESCAPED.search(text)
    if m is None:
        return None
    return f"byte 0x{ord(m.group()) - 0xDC00:02X} at column {m.start() + 1} is not UTF-8"


def shown(text: str) -> str:
    """*text* with each byte that was not UTF-8 written ``\\xE9`` (to log, print or store
    a rejected line: a surrogate escape cannot be encoded)."""
    if text.isascii():
        return text
    return _ESCAPED.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02X}", text)


def first_bad_line(text: str) -> tuple[int, str] | None:
    """(line number from 1, ``bad_bytes`` of it) for the first line of *text* holding a
    byte that was not UTF-8, or None."""
    if text.isascii() or _ESCAPED.search(text) is None:
        return None
    for no, line in enumerate(lines(text), 1):
        why = bad_bytes(line)
        if why is not None:
            return no, why
    return None
