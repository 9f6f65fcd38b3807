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
    # The HTTP/2 and QUIC libraries log every header and packet at debug level: their
    # warnings only, whatever *level* (the DoH/DoQ listeners log what matters themselves)
    for name in ("hpack", "h2", "quic", "aioquic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.root.level))
