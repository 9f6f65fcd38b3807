"""Logging set-up shared by the command line and the child processes (feed updates,
workers): one format, on stderr."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str) -> None:
    """Log at *level* (``debug``, ``info``, ...) to stderr as ``time LEVEL logger: message``."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
