#!/usr/bin/env bash
# Coverage-guided fuzzing (atheris) of every parser that reads outside input:
# fuzz/python/targets.py. Usage: scripts/fuzz-python.sh [SECONDS] [TARGET...]
# (default 60 s per target, every target). Exit 0: no finding. A finding is kept in
# build/fuzz-python/artifacts/TARGET-crash-*: copy it to fuzz/python/regressions/TARGET/
# with a descriptive name once fixed (tests/test_fuzz_regressions.py replays them).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
py=${PYTHON:-.venv/bin/python}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("$py" -c 'import sys; sys.path.insert(0, "fuzz/python")
import targets; print("\n".join(targets.TARGETS))')
fi
out=build/fuzz-python
mkdir -p "$out/artifacts"
failed=()
for t in "${targets[@]}"; do
  # regressions join the corpus: mutations of what once broke
  mkdir -p "$out/corpus/$t"
  cp -n fuzz/python/regressions/"$t"/* "$out/corpus/$t/" 2>/dev/null || true
  log="$out/$t.log"
  if "$py" fuzz/python/run.py "$t" "$out/corpus/$t" -max_total_time="$secs" -max_len=8192 \
      -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 \
      -artifact_prefix="$out/artifacts/$t-" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz-python $t: ${runs:-?} inputs, no finding"
  else
    echo "fuzz-python $t: FINDING (log: $log)" >&2
    grep -A12 "Uncaught Python exception" "$log" >&2 || tail -20 "$log" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-python: findings in ${failed[*]} (inputs in $out/artifacts/)" >&2
  exit 1
fi
