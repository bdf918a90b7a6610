#!/usr/bin/env bash
# The web client's browser tests (webtest/): Debian's chromium driven by
# playwright-core, run by node's test runner. Installs what is missing
# (chromium, nodejs/npm, an emoji font, the npm packages of webtest/package-lock.json:
# never a browser download), builds chat-node, starts Redis and RabbitMQ
# when they are not running; each test file starts and stops its own
# chat-node processes on free ports under a cluster id of its own.
# Screenshots of the main views go to a temporary directory, or with
# WEBTEST_SCREENSHOTS=docs/web to the README's pictures.
# Extra arguments go to `node --test` (e.g. a file: webtest/cluster.test.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'web-test: %s\n' "$*" >&2; }

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# Only for the screenshots: emoji drawn as emoji, not as empty boxes.
fc-list 2>/dev/null | grep -qi emoji || need+=(fonts-noto-color-emoji)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { log "missing ${need[*]}; install with: sudo apt-get install ${need[*]}"; exit 1; }
  log "installing ${need[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp=webtest/node_modules/.lock-installed
if ! cmp -s webtest/package-lock.json "$stamp"; then
  (cd webtest && npm ci --no-audit --no-fund --loglevel=error)
  cp webtest/package-lock.json "$stamp"
fi

cargo build -q --locked -p chat-node
# Absolute: the tests run from webtest/.
PARLEY_CHAT_NODE="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/chat-node"
export PARLEY_CHAT_NODE
scripts/services.sh redis rabbitmq

cd webtest
if [ $# -gt 0 ]; then
  files=("${@/#webtest\//}")
else
  files=(*.test.mjs)
fi
node --test --test-concurrency=1 "${files[@]}"
