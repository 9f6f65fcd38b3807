"""Run one fuzz target under atheris (libFuzzer for Python).

    python fuzz/python/run.py TARGET CORPUS_DIR [libFuzzer options...]

The corpus directory is seeded from ``targets.all_seeds`` when empty; what
libFuzzer finds (crash-*, timeout-*) is written to ``-artifact_prefix``.
``scripts/fuzz-python.sh`` runs every target for a bounded time.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["mamori"]):
    import mamori.config
    import mamori.feeds.parsers
    import mamori.pdns.fastparse
    import mamori.pdns.model
    import mamori.pdns.sensors.dnstap
    import mamori.pdns.sensors.pcap
    import mamori.policy.fastload
    import mamori.policy.zone
    import mamori.resolver.pipeline
    import mamori.xfr.wireparse  # noqa: F401

import targets


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in targets.TARGETS:
        names = ", ".join(targets.TARGETS)
        sys.exit(f"usage: run.py TARGET CORPUS_DIR [libFuzzer options]; targets: {names}")
    name, corpus = sys.argv[1], Path(sys.argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for seed in targets.all_seeds(name):
            (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    run = targets.TARGETS[name].run
    atheris.Setup([sys.argv[0], *sys.argv[3:], str(corpus)], run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
