"""One feed update in a child process, as `mamori serve` runs them.

``python -m mamori.feeds.worker CONFIG LOGLEVEL [FEED]``: updates FEED and
recompiles the datasets that unite it (no FEED, at start: rewrites every
feed's zone from its stored entries and compiles every dataset), then
prints one JSON line on stdout: ``{"ok": true, "summary": ...}`` or
``{"ok": false, "unreachable": ..., "error": ...}``. Log lines (rejected
lines, guard refusals) go to stderr, which the server shares.

A child keeps the parsing of a big feed (seconds of CPU, hundreds of MB for
a million entries) off the server's event loop and out of its memory.
"""

from __future__ import annotations

import json
import sys

from mamori.config.load import load_effective
from mamori.errors import ConfigError, StoreError
from mamori.feeds.parsers import FeedError, FeedUnreachableError
from mamori.feeds.sources import compile_datasets, compile_feeds, update
from mamori.logs import setup_logging
from mamori.threads import background_process


def main(argv: list[str]) -> int:
    path, level, *names = argv
    setup_logging(level)
    background_process()  # parsing a big feed must not slow the DNS loop down
    out: dict[str, object]
    try:
        # the server logged an error in the console's file already (and runs without it)
        cfg = load_effective(path, resolver=False, quiet=True)[0]
        if names:
            feed = next(f for f in cfg.feeds if f.name == names[0])
            out = {"ok": True, "summary": update(feed, cfg.store).summary()}
        else:
            out = {"ok": True, "summary": "", "feeds": compile_feeds(cfg)}
        out["datasets"] = compile_datasets(cfg, set(names) if names else None)
    except FeedUnreachableError as e:
        out = {"ok": False, "unreachable": True, "error": str(e)}
    except (FeedError, ConfigError, StoreError, StopIteration) as e:
        out = {"ok": False, "unreachable": False, "error": str(e) or "no such feed"}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
