#!/usr/bin/env bash
# Fuzz the native UDP batch helper (libFuzzer + AddressSanitizer + UBSan).
# Usage: scripts/fuzz-native.sh [SECONDS]   (default 60). Exit 0: no finding.
# Needs clang and libFuzzer's runtime (Debian: clang, libclang-rt-14-dev).
# Traffic stays on loopback; as root it also runs in a network namespace of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
out=build/fuzz
mkdir -p "$out/corpus" "$out/artifacts"
if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz-native: clang not installed (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I src/mamori/resolver fuzz/native/udpbatch_fuzz.c src/mamori/resolver/udpbatch_core.c \
  -o "$out/udpbatch_fuzz"
cp -n fuzz/native/seeds/* "$out/corpus/" 2>/dev/null || true
run=("$out/udpbatch_fuzz" -max_total_time="$secs" -max_len=2048 -timeout=10 -rss_limit_mb=2048
     -print_final_stats=1 -artifact_prefix="$out/artifacts/" "$out/corpus")
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
  unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}"
else
  "${run[@]}"
fi
