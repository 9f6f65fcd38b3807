"""Synthetic RPZ feeds with realistic name shapes (shared by the bench scripts)."""

from __future__ import annotations

import random
import string
from pathlib import Path

SHARED = (
    Path(__file__).resolve().parents[2] / "shared/data/feeds/urlhaus-filter/urlhaus-filter-rpz.conf"
)
TLDS = ["com", "net", "org", "ru", "info", "xyz", "top", "io", "de", "site"]


def shapes() -> list[list[int]]:
    """Label-length shapes of real feed names (URLhaus RPZ when available)."""
    if SHARED.exists():
        out = [
            [len(lb) for lb in line.split()[0].split(".")]
            for line in SHARED.read_text().splitlines()
            if line.endswith(" CNAME .")
        ]
        if out:
            return out
    return [[8, 3], [12, 7, 3], [5, 10, 2], [20, 4, 3], [3, 6, 9, 3]]


def make_names(n: int, seed: int = 42) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    sh = shapes()
    names: set[str] = set()
    while len(names) < n:
        s = rng.choice(sh)
        labels = ["".join(rng.choices(alphabet, k=max(1, min(ln, 40)))) for ln in s[:-1]]
        names.add(".".join([*labels, rng.choice(TLDS)]))
    return sorted(names)


def write_zone(path: Path, names: list[str]) -> None:
    """Every 10th name as a wildcard rule too ("*.name"), all NXDOMAIN."""
    with path.open("w") as f:
        f.write("$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n NS localhost.\n")
        for i, name in enumerate(names):
            f.write(f"{'*.' if i % 10 == 0 else ''}{name} CNAME .\n")
