"""Brand matches exported: CSV (one row per match) and STIX 2.1 (one ``indicator`` per
match in a ``bundle``, made with the ``stix2`` library, so other tools and TIPs take
them as they take any STIX feed)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime

from mamori import csvsafe
from mamori.discovery.brand_store import StoredMatch

CSV_FIELDS = (
    "brand", "name", "registrable", "target", "kind", "distance", "similarity", "same_suffix",
    "time_first", "time_last", "resolves", "addresses", "clients", "sources", "detected",
)  # fmt: skip


def to_csv(matches: Sequence[StoredMatch]) -> str:
    """RFC 4180 CSV with a header row (``CSV_FIELDS``); times are ISO 8601 UTC, lists
    are joined by spaces."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_FIELDS)
    for sm in matches:
        d = sm.as_json()
        row = []
        for f in CSV_FIELDS:
            v = d[f]
            if f in ("time_first", "time_last", "detected"):
                v = _iso(float(str(v))) if v else ""
            elif isinstance(v, list):
                v = " ".join(str(x) for x in v)
            row.append(v)
        w.writerow(csvsafe.row(row))  # formula-like cells quoted (OWASP)
    return out.getvalue()


def to_stix(matches: Sequence[StoredMatch]) -> str:
    """A STIX 2.1 bundle (JSON text) with one indicator per match: pattern
    ``[domain-name:value = 'NAME']``, ``indicator_types`` ``malicious-activity``,
    labels ``brand-lookalike`` and the kind, valid from when it was first seen."""
    import stix2

    objects = []
    for sm in matches:
        m = sm.match
        seen = sm.seen.time_first or int(sm.detected)
        name = m.name.replace("\\", "\\\\").replace("'", "\\'")
        objects.append(
            stix2.Indicator(
                name=f"{m.brand} look-alike: {m.name}",
                description=(
                    f"{m.name} imitates {m.target} ({m.kind}, edit distance {m.distance},"
                    f" visual similarity {m.similarity}); observed by mamori's brand watch"
                ),
                pattern=f"[domain-name:value = '{name}']",
                pattern_type="stix",
                indicator_types=["malicious-activity"],
                labels=["brand-lookalike", m.kind],
                valid_from=datetime.fromtimestamp(seen, UTC),
                allow_custom=False,
            )
        )
    bundle = stix2.Bundle(objects=objects) if objects else stix2.Bundle()
    return str(bundle.serialize(pretty=False))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["CSV_FIELDS", "to_csv", "to_stix"]
