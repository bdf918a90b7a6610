#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts the backends the tests need
# (Redis, RabbitMQ, MariaDB, PostgreSQL) when they are not running, then
# runs every test of the workspace.
# Extra arguments go to the test runner (e.g. a test name filter).
# With cargo-nextest installed, .config/nextest.toml applies: no retries,
# and a test that hangs is killed after 4 minutes. Plain `cargo test`
# (the fallback) has no per-test timeout of its own; the tests bound every
# wait themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
