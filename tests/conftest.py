from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str) -> str:
    """Path of a Debian tool the test needs; skip locally, fail in CI when missing."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        msg = f"{name} is not installed (scripts/install-test-deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path
