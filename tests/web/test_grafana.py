"""The Grafana dashboard only uses metrics mamori exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mamori.web import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SOURCE = Path(metrics.__file__).read_text()


def test_every_expression_names_an_exported_metric() -> None:
    dash = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\bmamori_[a-z_]+", target["expr"]))
    assert names
    for name in sorted(names):
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert f'"{base}"' in SOURCE or f'"{base}_total"' in SOURCE, f"{name} is not exported"
