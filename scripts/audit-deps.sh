#!/usr/bin/env bash
# Dependency audit: pip-audit over the locked pins (constraints.txt), against PyPI's
# vulnerability data (the per-release JSON API, which carries the OSV advisories).
#
# Exit 1 when a pinned release has a known vulnerability. When the vulnerability
# service cannot be reached (no internet, or a package mirror that serves only the
# simple index: pip-audit then skips every pin and would say "No known
# vulnerabilities found"), say "audit service unreachable" and exit 0: the audit did
# not run, and the build does not pretend it did.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
AUDIT=$VENV/bin/pip-audit
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

status=0
timeout 300 "$AUDIT" -r constraints.txt --no-deps --disable-pip --progress-spinner off \
    --format json --output "$OUT" 2>/dev/null || status=$?

"$VENV/bin/python" - "$OUT" "$status" <<'EOF'
import json
import sys

path, status = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as f:
        doc = json.load(f)
except (OSError, ValueError):
    doc = None
if doc is None:
    print(f"dependency audit: audit service unreachable (pip-audit exit {status}, no report);"
          " NOT audited")
    sys.exit(0)
deps = doc.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
audited = [d for d in deps if not d.get("skip_reason")]
vulnerable = [d for d in audited if d.get("vulns")]
if not audited:
    print(f"dependency audit: audit service unreachable ({len(skipped)} pins, none could be"
          " looked up); NOT audited")
    sys.exit(0)
for d in vulnerable:
    for v in d["vulns"]:
        fixed = ", ".join(v.get("fix_versions") or []) or "no fix yet"
        print(f"dependency audit: {d['name']} {d['version']}: {v['id']} (fixed in {fixed})")
for d in skipped:
    print(f"dependency audit: not audited: {d['name']}: {d['skip_reason']}")
print(f"dependency audit: {len(audited)} pins audited, {len(skipped)} skipped,"
      f" {len(vulnerable)} with known vulnerabilities")
sys.exit(1 if vulnerable else 0)
EOF
