"""Content-Security-Policy violations seen by Chromium (Playwright) in the console's
pages: each watched page reports them to its console ("Refused to execute inline
script because it violates the following Content Security Policy directive ...")."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

MARK = "Content Security Policy"
VIOLATIONS: list[str] = []


def watch_csp(page: Any) -> Any:
    """Record *page*'s CSP violations in VIOLATIONS; returns *page*."""
    page.on(
        "console",
        lambda msg: VIOLATIONS.append(f"{page.url}: {msg.text}") if MARK in msg.text else None,
    )
    return page


@contextlib.contextmanager
def no_csp_violation() -> Iterator[list[str]]:
    """AssertionError at the end if a watched page reported a CSP violation within."""
    VIOLATIONS.clear()
    yield VIOLATIONS
    found = list(VIOLATIONS)
    VIOLATIONS.clear()
    assert not found, found
