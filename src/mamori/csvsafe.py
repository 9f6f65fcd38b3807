"""CSV cells made safe to open in a spreadsheet (OWASP "CSV Injection"): a text cell
starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be taken as a
formula; it gets a leading ``'``. Numbers are left as they are."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """*value*, with a ``'`` in front when it is text a spreadsheet would run."""
    if isinstance(value, str) and value.startswith(_TRIGGERS):
        return "'" + value
    return value


def row(values: Iterable[Any]) -> list[Any]:
    """Every cell of *values* through ``cell``."""
    return [cell(v) for v in values]
