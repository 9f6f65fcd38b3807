"""Every input a fuzz target once crashed on (fuzz/python/regressions/TARGET/*) is
replayed through the same harness: it must now pass (no unexpected exception)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "fuzz" / "python"
sys.path.insert(0, str(FUZZ))
import targets  # noqa: E402

CASES = sorted((FUZZ / "regressions").glob("*/*"))


def test_every_regression_names_a_target() -> None:
    assert CASES
    assert {c.parent.name for c in CASES} <= set(targets.TARGETS)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_fuzz_finding_stays_fixed(case: Path) -> None:
    targets.TARGETS[case.parent.name].run(case.read_bytes())


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_seeds_pass(name: str) -> None:
    """The seed corpus itself runs clean (a harness that fails on its seeds finds nothing)."""
    for seed in targets.all_seeds(name)[:20]:
        targets.TARGETS[name].run(seed)
