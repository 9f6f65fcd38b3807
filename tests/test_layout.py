"""House rules checked on the source tree (the import boundaries are import-linter contracts
in pyproject.toml, run by `make lint`)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mamori"


def test_no_private_name_is_imported_from_another_module() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("mamori"):
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    offenders.append(
                        f"{path.relative_to(SRC)}: from {node.module} import {alias.name}"
                    )
    assert not offenders, "\n".join(offenders)


def test_every_package_has_a_docstring_saying_what_it_is_for() -> None:
    missing = [
        str(init.relative_to(SRC))
        for init in sorted(SRC.rglob("__init__.py"))
        if ast.get_docstring(ast.parse(init.read_text())) is None
    ]
    assert not missing, missing
