#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time and fails on any crash,
# panic, hang or leak libFuzzer reports.
#   scripts/fuzz.sh [seconds per target, default 60] [target ...]
# Needs the nightly toolchain (rustup). Installs cargo-fuzz when it is
# missing, into $CARGO_FUZZ_ROOT (default /var/cache/parley/cargo-tools),
# outside the work tree. Set CARGO_TARGET_DIR to share a build cache.
# The seed corpus in fuzz/corpus/<target>/ is only read: what libFuzzer
# finds goes to a scratch directory, and a crashing input to
# fuzz/artifacts/<target>/ (git-ignored), to replay with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz: seconds must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
log() { printf 'fuzz: %s\n' "$*" >&2; }

root="${CARGO_FUZZ_ROOT:-/var/cache/parley/cargo-tools}"
export PATH="$root/bin:$PATH"
if ! cargo +nightly --version >/dev/null 2>&1; then
  log "the nightly toolchain is missing: rustup toolchain install nightly"
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz into $root"
  # Its own temporary build directory, not the project's cache.
  env -u CARGO_TARGET_DIR cargo install --locked --root "$root" cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

for t in "${targets[@]}"; do
  log "$t: ${seconds}s"
  mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
  # New inputs go to the first corpus directory (scratch); the seeds are read.
  cargo +nightly fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1
  log "$t: no crash in ${seconds}s"
done
