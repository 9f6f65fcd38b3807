"""What every parser returns, and the error budget that refuses a garbage feed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mamori.dnsutil.textfile import bad_bytes, shown
from mamori.feeds.normalize import Entry, RejectedError, entry

# A line's tokens: (token, is an exception/allow rule, covers subdomains too)
Tokens = list[tuple[str, bool, bool]]


class FeedError(ValueError):
    """A feed that cannot be used as a whole (the last good version stays)."""


class FeedUnreachableError(FeedError):
    """A remote feed that cannot be fetched and has no copy yet (offline?)."""


@dataclass
class ParseResult:
    entries: list[Entry] = field(default_factory=list)
    exceptions: list[Entry] = field(default_factory=list)  # allow rules (adblock @@)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # line, text, reason
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # valid, not for DNS
    lines: int = 0

    def reject_bad_bytes(self, no: int, text: str) -> bool:
        """Reject line *no* if it holds bytes that were not UTF-8 (``dnsutil.textfile``),
        naming the byte and its column; whether it did."""
        why = None if text.isascii() else bad_bytes(text)
        if why is not None:
            self.rejected.append((no, shown(text), why))
        return why is not None

    def add(self, no: int, text: str, tokens: Tokens) -> None:
        for token, exception, subtree in tokens:
            try:
                e = entry(token)
            except RejectedError as r:
                self.rejected.append((no, text, str(r)))
                continue
            out = self.exceptions if exception else self.entries
            out.append(e)
            if subtree and e.kind == "domain":
                out.append(Entry("wildcard", e.value))


class SkipLineError(Exception):
    """A valid line that has no DNS meaning (a URL-path rule, local-data ...)."""


def run(
    lines: Iterable[str],
    tokens: Callable[[str], Tokens],
    comments: tuple[str, ...] = ("#",),
) -> ParseResult:
    """Common loop: comments and blank lines out, each line's tokens normalised.

    *lines* may keep their ends. A line holding bytes that were not UTF-8
    (see ``dnsutil.textfile``) is rejected, with the byte and its column.
    """
    out = ParseResult()
    for no, raw in enumerate(lines, 1):
        out.lines = no
        text = raw.strip()
        if not text or text.startswith(comments):
            continue
        if out.reject_bad_bytes(no, text):
            continue
        try:
            toks = tokens(text)
        except SkipLineError as s:
            out.skipped.append((no, text, str(s)))
            continue
        except RejectedError as r:
            out.rejected.append((no, text, str(r)))
            continue
        out.add(no, text, toks)
    return out


def check_budget(result: ParseResult, source: str, max_bad: float = 0.2) -> None:
    """Refuse a feed that is mostly garbage (or empty): FeedError naming the first bad lines."""
    good, bad = len(result.entries) + len(result.exceptions), len(result.rejected)
    if good == 0:
        first = "; ".join(f"line {n}: {why}" for n, _t, why in result.rejected[:3])
        raise FeedError(
            f"{source}: no usable entry in {result.lines} lines" + (f" ({first})" if first else "")
        )
    if bad > max_bad * (good + bad):
        first = "; ".join(f"line {n}: {why}" for n, _t, why in result.rejected[:3])
        raise FeedError(
            f"{source}: {bad} of {good + bad} entries rejected (more than {max_bad:.0%}): {first}"
        )
