"""Brand look-alikes: an index built from each brand's look-alike space, probed with
every name we observe (passive DNS, the query log), never by resolving candidates.

For each brand domain (a registrable domain, e.g. ``mizuho.co.jp``) the index holds:

- the labels dnstwist's fuzzers generate (addition, bitsquatting, cyrillic, homoglyph,
  hyphenation, insertion, omission, plural, repetition, replacement, subdomain,
  transposition, vowel-swap, dictionary; tld-swap and "various" with the brand's own
  suffix): one hash lookup per observed registrable label, whatever its suffix;
- the brand label's *skeleton*: confusable characters (Unicode UTS #39 data, as the
  ``confusable-homoglyphs`` package ships it) mapped to the ASCII letter they imitate,
  then ASCII look-alikes folded (``0``->``o``, ``1``/``i``->``l``, ``rn``->``m``, ``vv``->``w``,
  ``cl``->``d``, hyphens dropped): an observed label with the same skeleton is a homograph
  (``idn-homograph`` for an IDN, written in Cyrillic or Greek letters for instance);
- the halves of the brand label (one edit leaves one of them intact): an observed
  label of similar length that starts with the first half or ends with the second is
  checked by Levenshtein distance (``edit-distance``, one edit);
- the brand's keywords: a name containing one (A-label or U-label) is a ``keyword`` match.

The same label under another public suffix is ``tld-swap``. Names under a brand's own
domains are the brand's, never matches. The registrable domain follows the Public Suffix
List (``publicsuffixlist``). Matching costs a few hash lookups per name (see
docs/performance.md, "Brand watch").
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

import dnstwist

from mamori.discovery.suffixes import Suffixes

FUZZERS = (
    "addition", "bitsquatting", "cyrillic", "homoglyph", "hyphenation", "insertion",
    "omission", "plural", "repetition", "replacement", "subdomain", "transposition",
    "vowel-swap", "dictionary",
)  # fmt: skip
# Every kind a match can have, strongest evidence first (the brand's own label under
# another suffix first).
KINDS = ("tld-swap", *FUZZERS, "various", "idn-homograph", "edit-distance", "keyword")
# Words a brand label is combined with (dnstwist's dictionary fuzzer).
DICTIONARY = (
    "login", "secure", "account", "verify", "update", "support", "online", "bank",
    "pay", "auth", "signin", "web", "app", "my", "mail", "help", "info", "service",
)  # fmt: skip
TLDS = ("com", "net", "org", "info", "biz", "co", "io", "xyz", "top", "online", "site", "jp")
MIN_LABEL = 4  # generated labels shorter than this only match under the brand's suffix


@dataclass(frozen=True)
class Brand:
    """One watched brand: *domains* are registrable domains (A-labels, no final dot),
    *keywords* lowercase words (3+ characters) that a look-alike may contain."""

    name: str
    domains: tuple[str, ...]
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    """One observed name that imitates a brand.

    ``name``: lowercase, no final dot (A-label); ``registrable``: its registrable domain;
    ``target``: the brand domain it imitates; ``kind``: one of ``KINDS``; ``distance``:
    Levenshtein distance between the registrable labels (U-label form); ``similarity``:
    visual similarity in [0, 1] (1 - distance of the skeletons / the longer skeleton);
    ``same_suffix``: the name has the brand domain's public suffix.
    """

    brand: str
    name: str
    registrable: str
    target: str
    kind: str
    distance: int
    similarity: float
    same_suffix: bool


# ----------------------------------------------------------------- skeletons
_FOLD = str.maketrans({"0": "o", "1": "l", "i": "l", "-": None, "_": None})
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


# Look-alikes UTS #39 keeps apart from the ASCII letter (its prototype for them is
# LATIN SMALL LETTER KRA): Cyrillic ka, Greek kappa and kra itself read as "k".
_EXTRA = {"\u0138": "k", "\u043a": "k", "\u03ba": "k"}


@lru_cache(maxsize=1)
def _confusables() -> dict[str, str]:
    """Non-ASCII character -> the ASCII letter or digit it is confusable with (UTS #39
    data; combining marks dropped, one hop through another non-ASCII character)."""
    import unicodedata

    from confusable_homoglyphs import utils

    data = utils.load("confusables.json")

    def plain(text: str) -> str:
        return "".join(c for c in text if not unicodedata.combining(c)).lower()

    c: str | None

    out: dict[str, str] = {}
    for char, glyphs in data.items():
        if char.isascii() or len(char) != 1:
            continue
        for g in glyphs:
            c = plain(g["c"])
            if len(c) == 1 and c.isascii() and c.isalnum():
                out[char] = c
                break
    for char, glyphs in data.items():  # one hop: a confusable of a confusable
        if char.isascii() or len(char) != 1 or char in out:
            continue
        for g in glyphs:
            c = out.get(plain(g["c"]))
            if c is not None:
                out[char] = c
                break
    out.update(_EXTRA)
    return out


def ascii_skeleton(label: str) -> str:
    """The skeleton of an ASCII label (see the module docstring)."""
    s = label.translate(_FOLD)
    for a, b in _PAIRS:
        if a in s:
            s = s.replace(a, b)
    return s


def skeleton(label: str) -> str:
    """The skeleton of a label in U-label or ASCII form: confusables mapped to ASCII
    (UTS #39 data), accents stripped, then ``ascii_skeleton``."""
    if label.isascii():
        return ascii_skeleton(label)
    import unicodedata

    table = _confusables()
    chars = []
    for raw in label.lower():
        ch = table.get(raw, raw)
        if not ch.isascii():
            base = unicodedata.normalize("NFKD", ch)[:1]
            ch = table.get(base, base)
        chars.append(ch)
    return ascii_skeleton("".join(chars))


def to_unicode(label: str) -> str:
    """A label's U-label form (``xn--`` decoded); the label itself if it does not decode."""
    if not label.startswith("xn--"):
        return label
    try:
        return label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        return label


def levenshtein(a: str, b: str, limit: int = 3) -> int:
    """Edit distance (insert, delete, substitute: 1 each); anything over *limit* is
    returned as ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return min(prev[-1], limit + 1)


def similarity(a: str, b: str) -> float:
    """Visual similarity of two labels in [0, 1], from their skeletons."""
    sa, sb = skeleton(a), skeleton(b)
    longest = max(len(sa), len(sb), 1)
    return round(max(0.0, 1 - levenshtein(sa, sb, longest) / longest), 3)


# ----------------------------------------------------------------- the index
Entry = tuple[int, str, str]  # (brand index, kind, target domain)


class BrandIndex:
    """The look-alike index of some brands; ``match`` probes it with observed names.

    Built once per brand list (dnstwist's generation: about 0.1-1 s per brand domain);
    then read-only, so one index serves every batch and thread.
    """

    def __init__(self, brands: Sequence[Brand]) -> None:
        self.brands = tuple(brands)
        self.fingerprint = hashlib.sha256(repr(self.brands).encode()).hexdigest()[:16]
        self.sfx = Suffixes()
        self.labels: dict[str, Entry] = {}  # generated label -> entry (any suffix)
        self.exact: dict[str, Entry] = {}  # generated full domain (dots inside) -> entry
        self.skeletons: dict[str, Entry] = {}
        self.heads: dict[str, list[Entry]] = {}  # first half of a brand label -> entries
        self.tails: dict[str, list[Entry]] = {}  # second half -> entries
        self.own: dict[str, int] = {}  # brand domain -> brand index
        self.brand_labels: dict[str, Entry] = {}  # brand label -> entry (tld-swap)
        self.lengths: set[int] = set()
        self.head_rx: re.Pattern[str] | None = None
        self.tail_rx: re.Pattern[str] | None = None
        words = sorted({k for b in self.brands for k in b.keywords}, key=len, reverse=True)
        self.keyword_rx = re.compile("|".join(map(re.escape, words))) if words else None
        self.keyword_brand = {k: i for i, b in enumerate(self.brands) for k in b.keywords}
        for i, brand in enumerate(self.brands):  # every brand label first (never a look-alike)
            for domain in brand.domains:
                split = self.sfx.split(domain)
                if split is None:
                    raise ValueError(f"{domain} is not a registrable domain")
                self.own[".".join(split)] = i
                self.brand_labels.setdefault(split[0], (i, "tld-swap", ".".join(split)))
        for i, brand in enumerate(self.brands):
            for domain in brand.domains:
                self._add_domain(i, domain)
        self.min_skel = min((len(k) for k in self.skeletons), default=0)
        self.head_lens = sorted({len(h) for h in self.heads})
        self.tail_lens = sorted({len(t) for t in self.tails})
        if self.heads:
            by_len = sorted(self.heads, key=len, reverse=True)
            self.head_rx = re.compile("|".join(map(re.escape, by_len)))
            by_len = sorted(self.tails, key=len, reverse=True)
            self.tail_rx = re.compile("(?:" + "|".join(map(re.escape, by_len)) + r")\Z")

    def _add_domain(self, i: int, domain: str) -> None:
        split = self.sfx.split(domain)
        assert split is not None  # checked by __init__
        label, suffix = split
        target = f"{label}.{suffix}"
        # Label fuzzers on a neutral suffix (dnstwist restricts IDN glyphs by some
        # registries' rules; what we observe is not so restricted), then the suffix ones.
        fuzz = dnstwist.Fuzzer(f"{to_unicode(label)}.com", dictionary=DICTIONARY)
        fuzz.generate(fuzzers=list(FUZZERS))
        for p in sorted(fuzz.domains, key=lambda p: (KINDS.index(p["fuzzer"]), p["domain"])):
            gen = p["domain"][: -len(".com")]
            if not gen or gen == label or gen in self.brand_labels:
                continue
            entry = (i, p["fuzzer"], target)
            if "." in gen:
                self.exact.setdefault(f"{gen}.{suffix}", entry)
            elif len(gen) >= MIN_LABEL:
                self.labels.setdefault(gen, entry)
            else:
                self.exact.setdefault(f"{gen}.{suffix}", entry)
        tld_fuzz = dnstwist.Fuzzer(target, tld_dictionary=list(TLDS))
        tld_fuzz.subdomain, tld_fuzz.domain, tld_fuzz.tld = "", to_unicode(label), suffix
        tld_fuzz.generate(fuzzers=["various"])
        for p in tld_fuzz.domains:
            if p["fuzzer"] == "various" and p["domain"] != target:
                self.exact.setdefault(p["domain"], (i, "various", target))
        self.skeletons.setdefault(skeleton(to_unicode(label)), (i, "idn-homograph", target))
        if len(label) >= 5:
            # One edit leaves either half intact (pigeonhole): a label within one edit
            # starts with the first half or ends with the second.
            self.lengths.update((len(label) - 1, len(label), len(label) + 1))
            entry = (i, "edit-distance", target)
            h = len(label) // 2
            self.heads.setdefault(label[:h], []).append(entry)
            self.tails.setdefault(label[h:], []).append(entry)

    # ------------------------------------------------------------- probing
    def match(self, names: Iterable[str]) -> list[Match]:
        """The matches among *names* (any case, final dot or not), at most one per name
        and brand: the strongest kind wins (``KINDS`` order)."""
        out: list[Match] = []
        split = self.sfx.split
        exact, own, probe = self.exact, self.own, self._probe
        normal = [raw.rstrip(".").lower() for raw in names]
        keyword = self._keywords(normal)
        memo: dict[str, tuple[Entry, ...]] = {}
        for i, name in enumerate(normal):
            parts = split(name)
            if parts is None:
                continue
            label, suffix = parts
            reg = f"{label}.{suffix}"
            if reg in own:
                continue
            found = memo.get(reg)
            if found is None:
                found = memo[reg] = probe(label)
            more: list[Entry] = []
            if name in exact:
                more.append(exact[name])
            elif len(name) > len(reg):  # a generated "sub.domain" under more labels
                tail = name
                while len(tail) > len(reg):
                    tail = tail.partition(".")[2]
                    if tail in exact:
                        more.append(exact[tail])
                        break
            k = keyword.get(i)
            if k is not None:
                more.append((k, "keyword", ""))
            if found or more:
                out.extend(self._matches(name, reg, label, suffix, [*found, *more]))
        return out

    def _keywords(self, names: list[str]) -> dict[int, int]:
        """Index of each name containing a keyword -> its brand: one scan of the batch
        joined (the expression runs over it once, not once per name); IDNs in U-labels."""
        kw = self.keyword_rx
        if kw is None:
            return {}
        text = "\n".join(names)
        starts = [0, *accumulate(map((1).__add__, map(len, names)))]
        out: dict[int, int] = {}
        for m in kw.finditer(text):
            out.setdefault(bisect_right(starts, m.start()) - 1, self.keyword_brand[m.group(0)])
        if "xn--" in text:
            for i, name in enumerate(names):
                if "xn--" in name and i not in out:
                    hit = kw.search(".".join(to_unicode(x) for x in name.split(".")))
                    if hit is not None:
                        out[i] = self.keyword_brand[hit.group(0)]
        return out

    def _probe(self, label: str) -> tuple[Entry, ...]:
        """What a registrable label matches, whatever its suffix (memoised per batch)."""
        found: list[Entry] = []
        e = self.labels.get(label)
        if e is not None:
            found.append(e)
        e = self.brand_labels.get(label)
        if e is not None:
            found.append(e)
        if label.startswith("xn--"):
            ulabel = to_unicode(label)
            e = self.skeletons.get(skeleton(ulabel))
        else:
            ulabel = label
            e = self.skeletons.get(ascii_skeleton(label)) if len(label) >= self.min_skel else None
        if e is not None:
            found.append(e)
        if len(ulabel) in self.lengths:
            cands: list[Entry] = []
            # the expressions say whether some half fits; then every half that fits
            if self.head_rx is not None and self.head_rx.match(ulabel) is not None:
                for h in self.head_lens:
                    cands.extend(self.heads.get(ulabel[:h], ()))
            if self.tail_rx is not None and self.tail_rx.search(ulabel) is not None:
                for h in self.tail_lens:
                    cands.extend(self.tails.get(ulabel[-h:], ()))
            for entry in cands:
                target_label = to_unicode(entry[2].partition(".")[0])
                if levenshtein(ulabel, target_label, 1) <= 1:
                    found.append(entry)
                    break
        return tuple(found)

    def _matches(
        self, name: str, reg: str, label: str, suffix: str, found: list[Entry]
    ) -> list[Match]:
        best: dict[int, Entry] = {}
        for e in found:
            cur = best.get(e[0])
            if cur is None or KINDS.index(e[1]) < KINDS.index(cur[1]):
                best[e[0]] = e
        out = []
        ulabel = to_unicode(label)
        for i, (_, found_kind, found_target) in sorted(best.items()):
            brand = self.brands[i]
            target = found_target or min(  # keyword: the nearest brand domain
                brand.domains, key=lambda d: levenshtein(ulabel, d.split(".")[0], 64)
            )
            tlabel, _, tsuffix = target.partition(".")
            tl = to_unicode(tlabel)
            ascii_homograph = found_kind == "idn-homograph" and ulabel.isascii()
            kind = "homoglyph" if ascii_homograph else found_kind
            out.append(
                Match(
                    brand=brand.name,
                    name=name,
                    registrable=reg,
                    target=target,
                    kind=kind,
                    distance=levenshtein(ulabel, tl, 64),
                    similarity=similarity(ulabel, tl),
                    same_suffix=suffix == tsuffix,
                )
            )
        return out


__all__ = ["KINDS", "Brand", "BrandIndex", "Match", "levenshtein", "skeleton"]
