"""Registrable domains (Public Suffix List) fast enough for every observed name: the
``publicsuffixlist`` library's data and lookup, memoised on the labels that decide."""

from __future__ import annotations

from publicsuffixlist import PSLFILE, PublicSuffixList


class Suffixes:
    """Registrable domains by the Public Suffix List (``publicsuffixlist``'s data and
    lookup), memoised on the few last labels that decide the suffix: when the last k+1
    labels end no rule and the last k are no wildcard's base, rules of at most k labels
    can match, so the answer for the last k labels holds for every name ending so."""

    def __init__(self) -> None:
        self.psl = PublicSuffixList()
        self.deep: set[str] = set()  # every tail of every rule ("b.c" and "c" of "a.b.c")
        self.wild: set[str] = set()  # bases of wildcard rules ("ck" of "*.ck")
        with open(PSLFILE, encoding="utf-8") as f:
            for line in f:
                rule = line.split(" ")[0].strip().lower()
                if not rule or rule.startswith("//"):
                    continue
                rule = rule.lstrip("!")
                if rule.startswith("*."):
                    rule = rule[2:]
                    self.wild.update((rule, _idna(rule)))
                for form in {rule, _idna(rule)}:
                    parts = form.split(".")
                    self.deep.update(".".join(parts[i:]) for i in range(len(parts)))
        self._memo: dict[str, str | None] = {}

    def split(self, name: str) -> tuple[str, str] | None:
        """(label, suffix) of *name*'s registrable domain (``mizuho``, ``co.jp``); None for
        a public suffix itself. *name*: lowercase, no final dot."""
        cut = name.rfind(".")
        while cut > 0:
            nxt = name.rfind(".", 0, cut)
            if name[nxt + 1 :] not in self.deep:
                break
            cut = nxt
        key = name[cut + 1 :] if cut >= 0 else name
        if key in self.wild and cut > 0:
            key = name[name.rfind(".", 0, cut) + 1 :]
        memo = self._memo
        if key in memo:
            suffix = memo[key]
        else:
            suffix = self.psl.publicsuffix(key)
            if len(memo) > 200_000:
                memo.clear()
            memo[key] = suffix
        if suffix is None or len(name) <= len(suffix):
            return None
        head = name[: -len(suffix) - 1]
        return head.rpartition(".")[2], suffix


def _idna(rule: str) -> str:
    try:
        return rule.encode("idna").decode("ascii")
    except UnicodeError:
        return rule


__all__ = ["Suffixes"]
