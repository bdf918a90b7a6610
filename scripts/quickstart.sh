#!/usr/bin/env bash
# The README's first command, exactly as a newcomer runs it: `cargo run -p
# chat-node` on a fresh clone. Starts it, waits for the admin token it
# prints, checks /healthz, issues a user token with the printed admin token,
# opens nothing else, then stops it with SIGTERM and expects a clean exit.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'quickstart: %s\n' "$*" >&2; }

cargo build -q -p chat-node
out=$(mktemp)
trap 'kill -9 "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
# setsid: the signal goes to cargo and the node alike.
setsid cargo run -q -p chat-node >"$out" 2>&1 &
pid=$!

admin=""
for _ in $(seq 1 120); do
  admin=$(sed -n 's/^admin token (random[^:]*: \([^ ]*\)$/\1/p' "$out" | head -n 1)
  [ -n "$admin" ] && curl -fsS http://127.0.0.1:8750/healthz >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$out"; log "chat-node exited early"; exit 1; }
  sleep 0.5
done
[ -n "$admin" ] || { cat "$out"; log "no admin token printed"; exit 1; }
[ "$(curl -fsS http://127.0.0.1:8750/healthz)" = "ok" ] || { log "/healthz did not say ok"; exit 1; }

reply=$(curl -fsS -X POST -H "Authorization: Bearer $admin" \
  -d '{"user":"alice","platform":"web"}' http://127.0.0.1:8750/v1/tokens)
case "$reply" in
  *'"token":"web.'*'"user":"alice"'*) ;;
  *) log "unexpected token reply: $reply"; exit 1 ;;
esac
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer wrong" \
  -d '{"user":"alice","platform":"web"}' http://127.0.0.1:8750/v1/tokens)
[ "$code" = 401 ] || { log "a wrong admin token got $code, not 401"; exit 1; }

kill -TERM -- "-$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || { cat "$out"; log "chat-node exited with $status after SIGTERM"; exit 1; }
grep -q "drained; bye" "$out" || { cat "$out"; log "no clean drain in the log"; exit 1; }
log "cargo run -p chat-node: started, healthy, issued a token, stopped cleanly"
