#!/usr/bin/env bash
# Debian packages the tests and benchmarks use as real peers. Installs what is
# missing when running as root (CI); otherwise says what to install.
set -euo pipefail
declare -A need=(
  [dig]=bind9-dnsutils
  [kdig]=knot-dnsutils
  [knotd]=knot
  [unbound]=unbound
  [dnsperf]=dnsperf
  [sqlite3]=sqlite3
  [ip]=iproute2
  [named]=bind9
  [rbldnsd]=rbldnsd
  [chromium]=chromium
  [clang]=clang
  [dnsmasq]=dnsmasq-base
  [curl]=curl
  [clickhouse-server]=clickhouse-server
)
missing=()
for bin in "${!need[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("${need[$bin]}")
done
# Files, not programs: a Japanese font for the block page's screenshots.
[ -e /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || missing+=(fonts-ipafont-gothic)
# libFuzzer's runtime, for scripts/fuzz-native.sh (the native UDP helper's fuzz target).
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a" >/dev/null || missing+=(libclang-rt-14-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The packages' own services are not wanted: tests start private instances.
  for svc in unbound knot named rbldnsd clickhouse-server; do
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
  done
else
  echo "warning: missing Debian packages (tests needing them will be skipped): ${missing[*]}" >&2
  echo "         install with: sudo apt-get install ${missing[*]}" >&2
fi
