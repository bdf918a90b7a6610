#!/usr/bin/env bash
# Benchmark scenarios, each one command. Builds release binaries, starts the
# nodes it needs on 127.0.0.1 (and Redis/RabbitMQ via scripts/services.sh),
# runs chat-bench (several processes where one would pass the open-file
# limit), and writes docs/bench/<scenario>.json. Then
# scripts/bench_report.py turns every JSON there into docs/bench/README.md
# and docs/bench/latency.png.
#
# usage: [RATE=msgs/s] [RUNS=n] [OUT=dir] scripts/bench.sh idle|memory|redis|redis-archive|cluster|groups|drain|archive|redis-send [--quick]
# redis-archive: one node on Redis with the MariaDB archive on (RATE, default
# 25000), 2,000 users; the report watches MariaDB's CPU too.
# redis-send: Redis CPU and memory per send measured alone (chat-redis-send,
# no node): <out>/redis-send/<label>-{50,2000}[-feed].json (SENDS=n sends each,
# CONCURRENCY=n calls in flight, default 64).
# groups: three nodes on Redis and RabbitMQ, 3000 users, two runs: groups of
# 10 (RATE, default 1000 messages/s) and groups of 500 (RATE/25), members
# spread over the nodes; <out>/groups-10.json and groups-500.json report
# delivered copies/s, latency, CPU per delivered copy and the exactly-once
# check over every member's devices.
# drain: 15,000 sessions on one of three nodes, which gets SIGTERM
# (DRAIN_RATE=n sets its CHAT_DRAIN_RATE); the report goes to
# <out>/drain/<label>.json (chat-drain's own shape, not in the latency table).
# archive: Redis memory with and without the SQL archive at a steady rate
# (RATE, default 3000; USERS, default 50; HOT_MESSAGES, default 50): one node
# on a private Redis (port 16391, so nothing else's keys count), a small hot
# window; 60 s without the archive and default retention, 60 s without the
# archive and the small window's settings, then 150 s with MariaDB in a fresh
# database (--quick: 20 s and 40 s). scripts/bench_archive.py samples Redis
# used_memory, /metrics and the SQL row count every second and writes
# <out>/archive/{no-archive-defaults,no-archive,archive}.json, README.md and archive.png.
# CHAT_BENCH=path runs that chat-bench binary instead of the one built here.
# RATE overrides the scenario's rate; the result is then labelled <scenario>-<rate>.
# RUNS repeats the whole scenario (fresh nodes each time); run k > 1 is
# labelled "<label>#k", so the spread between runs shows.
# --quick measures 5 s instead of 20 (and opens fewer idle sessions).
# OUT writes the results elsewhere than docs/bench (a trial run that must
# not replace the published ones: RATE=100 OUT=/tmp/b scripts/bench.sh redis --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:?usage: scripts/bench.sh idle|memory|redis|redis-archive|cluster|groups|drain|archive|redis-send [--quick]}
quick=${2:-}
if [ "${RUNS:-1}" -gt 1 ] && [ -z "${RUN:-}" ]; then
  for k in $(seq 1 "$RUNS"); do RUN=$k "$0" "$@"; done
  exit
fi
out=${OUT:-docs/bench}
mkdir -p "$out"
cargo build --release -q -p chat-node -p chat-bench --bins
bin=${CARGO_TARGET_DIR:-target}/release
# CHAT_BENCH: another chat-bench binary (an older build, to compare generators).
gen=${CHAT_BENCH:-$bin/chat-bench}
admin=bench-admin
cluster="bench-$scenario-$$"
pids=()
names=()
# Processes to watch that the script did not start (and does not stop).
watch_also=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for port in 18750 18760 18770; do
    rabbitmqctl -q -n rabbit@localhost delete_queue "chat.$cluster.$port" >/dev/null 2>&1 || true
  done
  if command -v redis-cli >/dev/null; then
    redis-cli --scan --pattern "chat:$cluster:*" | xargs -r -n 1000 redis-cli del >/dev/null || true
  fi
}
trap cleanup EXIT

# start_node ORDINAL [ENV...]: a node on port 18750 + 10 x ordinal.
start_node() {
  local ordinal=$1; shift
  env CHAT_CLUSTER="$cluster" CHAT_ADMIN_TOKEN=$admin CHAT_ORDINAL="$ordinal" CHAT_BASE_PORT=18750 \
    CHAT_HEALTH_PORT=0 CHAT_BIND=127.0.0.1 CHAT_ADVERTISE='127.0.0.1:{port}' RUST_LOG=warn \
    CHAT_RATE_PER_S=1000 CHAT_RATE_BURST=2000 "$@" "$bin/chat-node" &
  pids+=($!)
  names+=("node$ordinal")
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((18750 + 10 * ordinal))/readyz" >/dev/null && return
    sleep 0.1
  done
  echo "node $ordinal did not become ready" >&2; exit 1
}

# bench PROCESSES LABEL ARGS...: run chat-bench in parallel processes and merge.
bench() {
  local procs=$1 label=$2; shift 2
  local parts=() watch=() i
  # CPU over the measuring window: the nodes, Redis, RabbitMQ, the generators.
  for i in "${!pids[@]}"; do watch+=("${names[$i]}=${pids[$i]}"); done
  watch+=("${watch_also[@]}")
  local redis rabbit
  redis=$(pgrep -x redis-server | head -1 || true)
  rabbit=$(pgrep -x beam.smp | head -1 || true)
  [ -n "$redis" ] && [ "$scenario" != idle ] && [ "$scenario" != memory ] && watch+=("redis=$redis")
  [ -n "$rabbit" ] && { [ "$scenario" = cluster ] || [ "$scenario" = groups ]; } && watch+=("rabbitmq=$rabbit")
  for i in $(seq 1 "$procs"); do
    "$gen" --admin-token $admin --label "$label" --prefix "p$i-" \
      --watch "$(IFS=,; echo "${watch[*]}")" --json "$out/.$label.$i.json" "$@" >/dev/null &
    parts+=($!)
  done
  for p in "${parts[@]}"; do wait "$p"; done
  python3 scripts/bench_report.py merge "$out/$label.json" "$out"/."$label".*.json
  rm -f "$out"/."$label".*.json
}

d=20; [ "$quick" = --quick ] && d=5
label=$scenario; [ -n "${RATE:-}" ] && label="$scenario-$RATE"
# CONTACTS=k: one-to-one messages go to one of each user's k contacts
# (chat-bench --contacts) instead of to anyone.
pattern=()
if [ -n "${CONTACTS:-}" ]; then pattern=(--contacts "$CONTACTS"); label="$label-contacts$CONTACTS"; fi
if [ "${RUN:-1}" -gt 1 ]; then label="$label#$RUN"; fi
# The command that makes this run again, recorded in its report.
BENCH_AGAIN="${RATE:+RATE=$RATE }${CONTACTS:+CONTACTS=$CONTACTS }"
if [ "${RUN:-1}" -gt 1 ]; then BENCH_AGAIN+="RUNS=$RUN "; fi
BENCH_AGAIN+="scripts/bench.sh $scenario${quick:+ $quick}"
export BENCH_AGAIN
case "$scenario" in
  idle)
    # As many idle sessions as one node holds here: a process may open at
    # most 20,000 files, the node included, so ~19,000 sessions.
    start_node 0
    n=9500; [ "$quick" = --quick ] && n=1000
    bench 2 "$label" --nodes 127.0.0.1:18750 --users "$n" --rate 0 --connect-concurrency 500
    ;;
  memory)
    start_node 0
    bench 1 "$label" --nodes 127.0.0.1:18750 --users 2000 --rate "${RATE:-20000}" --duration-s "$d" --sync-users 200 "${pattern[@]}"
    ;;
  redis)
    scripts/services.sh redis
    start_node 0 CHAT_REDIS_URL=redis://127.0.0.1:6379/0
    bench 1 "$label" --nodes 127.0.0.1:18750 --users 2000 --rate "${RATE:-20000}" --duration-s "$d" --sync-users 200 "${pattern[@]}"
    ;;
  redis-archive)
    # One node on Redis with the SQL archive on (MariaDB, a fresh database
    # each run, dropped after): every message also goes to the archive feed
    # and, batched, to SQL, as in production; the default hot window.
    scripts/services.sh redis mariadb
    db=parley_bench_$$
    sql=(mariadb --protocol=TCP -h127.0.0.1 -uparley --password=parley)
    "${sql[@]}" -e "CREATE DATABASE $db"
    trap 'cleanup; "${sql[@]}" -e "DROP DATABASE IF EXISTS $db" || true' EXIT
    start_node 0 CHAT_REDIS_URL=redis://127.0.0.1:6379/0 CHAT_ARCHIVE_URL="mysql://parley:parley@127.0.0.1:3306/$db"
    mariadb_pid=$(pgrep -x mariadbd | head -1 || pgrep -x mysqld | head -1 || true)
    [ -n "$mariadb_pid" ] && watch_also+=("mariadb=$mariadb_pid")
    bench 1 "$label" --nodes 127.0.0.1:18750 --users 2000 --rate "${RATE:-25000}" --duration-s "$d" --sync-users 200 "${pattern[@]}"
    ;;
  cluster)
    scripts/services.sh
    for o in 0 1 2; do
      start_node "$o" CHAT_REDIS_URL=redis://127.0.0.1:6379/0 CHAT_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
    done
    bench 1 "$label" --nodes 127.0.0.1:18750,127.0.0.1:18760,127.0.0.1:18770 --users 3000 \
      --rate "${RATE:-10000}" --cross-node --duration-s "$d" --sync-users 200 "${pattern[@]}"
    ;;
  groups)
    scripts/services.sh
    for o in 0 1 2; do
      start_node "$o" CHAT_REDIS_URL=redis://127.0.0.1:6379/0 CHAT_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
    done
    nodes=127.0.0.1:18750,127.0.0.1:18760,127.0.0.1:18770
    rate=${RATE:-1000}
    bench 1 "${label}-10" --nodes "$nodes" --users 3000 --group-size 10 --rate "$rate" \
      --duration-s "$d" --sync-users 100
    bench 1 "${label}-500" --nodes "$nodes" --users 3000 --group-size 500 --rate $(( rate / 25 > 0 ? rate / 25 : 1 )) \
      --duration-s "$d" --sync-users 100
    label="${label}-{10,500}"
    ;;
  drain)
    scripts/services.sh
    n=15000; [ "$quick" = --quick ] && n=2000
    backends=(CHAT_REDIS_URL=redis://127.0.0.1:6379/0 CHAT_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f)
    # The grace covers 15,000 sessions at the drain rate, with room.
    start_node 0 "${backends[@]}" CHAT_DRAIN_RATE="${DRAIN_RATE:-500}" CHAT_DRAIN_GRACE_S=60
    start_node 1 "${backends[@]}"
    start_node 2 "${backends[@]}"
    mkdir -p "$out/drain"
    "$bin/chat-drain" --drain 127.0.0.1:18750 --drain-pid "${pids[0]}" \
      --others 127.0.0.1:18760,127.0.0.1:18770 --admin-token $admin --sessions "$n" \
      --json "$out/drain/$label.json" >/dev/null
    python3 - "$out/drain/$label.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"drain of {r['sessions']} sessions: told from {r['told_first_s']:.2f} s to {r['told_last_s']:.2f} s, "
      f"peak {r['peak_connects_per_s']} connects/s on the other nodes, settled in {r['settled_s']:.1f} s, "
      f"node gone after {r['node_exit_s']} s; moved to {r['moved_to']}; sent {r['sent']}, "
      f"missing {r['missing']}, repeated pts {r['repeated_pts']}, untold {r['closed_untold']}, errors {len(r['errors'])}")
PY
    echo "wrote $out/drain/$label.json"
    exit 0
    ;;
  redis-send)
    # What one send costs Redis alone: chat-redis-send drives the Redis
    # store's own send (no node, no WebSocket) at a private Redis (port
    # 16392, flushed first), CONCURRENCY calls in flight (64), between random pairs of 50
    # users (1,225 conversations: the per-message cost) and of 2,000 (most
    # sends open a conversation), each alone and with the archive feed.
    scripts/services.sh redis # installs redis-server when missing
    rport=16392
    redis-server --bind 127.0.0.1 --port $rport --save '' --appendonly no \
      --logfile /tmp/parley-bench-redis-send.log &
    pids+=($!); names+=(redis)
    for _ in $(seq 50); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.1; done
    mkdir -p "$out/redis-send"
    for users in 50 2000; do
      for feed in "" --archive-feed; do
        name="$label-$users${feed:+-feed}"
        "$bin/chat-redis-send" --redis "redis://127.0.0.1:$rport/0" --users "$users" \
          --sends "${SENDS:-200000}" --concurrency "${CONCURRENCY:-64}" $feed --label "$name" \
          --json "$out/redis-send/$name.json" >/dev/null
        python3 - "$out/redis-send/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{r['label']}: {r['redis_cpu_us_per_send']:.1f} us of Redis CPU and "
      f"{r['used_memory_bytes_per_send']:.0f} bytes of Redis memory per send "
      f"({r['sends']} sends, {r['users']} users, {r['sends_per_s']:.0f} sends/s)")
PY
      done
    done
    redis-cli -p $rport FLUSHALL >/dev/null
    exit 0
    ;;
  archive)
    scripts/services.sh redis mariadb # redis: installs redis-server when missing
    rport=16391
    redis-server --bind 127.0.0.1 --port $rport --save '' --appendonly no \
      --logfile /tmp/parley-bench-archive-redis.log &
    redis_pid=$!
    pids+=("$redis_pid"); names+=(redis)
    for _ in $(seq 50); do redis-cli -p $rport ping >/dev/null 2>&1 && break; sleep 0.1; done
    # The hot window and everything else that bounds Redis, small enough to
    # fill in the first seconds: with USERS users there are USERS*(USERS-1)/2
    # conversations, each keeping its newest HOT_MESSAGES.
    hot=(CHAT_REDIS_URL=redis://127.0.0.1:$rport/0 CHAT_HOT_MESSAGES="${HOT_MESSAGES:-50}" CHAT_HOT_SECONDS=10
      CHAT_INBOX_RETENTION_ENTRIES=100 CHAT_INBOX_RETENTION_DAYS=0 CHAT_CLIENT_ID_TTL_S=10)
    users=${USERS:-50} rate=${RATE:-3000}
    d_arch=150 d_plain=60
    [ "$quick" = --quick ] && d_arch=40 d_plain=20
    again="scripts/bench.sh archive${quick:+ $quick}"
    [ -n "${RATE:-}" ] && again="RATE=$RATE $again"
    [ -n "${USERS:-}" ] && again="USERS=$USERS $again"
    [ -n "${HOT_MESSAGES:-}" ] && again="HOT_MESSAGES=$HOT_MESSAGES $again"
    db=parley_bench_archive_$$
    sql=(mariadb --protocol=TCP -h127.0.0.1 -uparley --password=parley)
    "${sql[@]}" -e "CREATE DATABASE $db"
    trap 'cleanup; "${sql[@]}" -e "DROP DATABASE IF EXISTS $db" || true' EXIT
    mariadb_pid=$(pgrep -x mariadbd | head -1 || pgrep -x mysqld | head -1 || true)
    mkdir -p "$out/archive"
    # phase NAME SECONDS TAIL [ENV...]: a node, the sampler, the load; the
    # sampler goes on TAIL seconds after the load (the archive catching up).
    phase() {
      local name=$1 secs=$2 tail=$3; shift 3
      local extra=() watch="redis=$redis_pid"
      start_node 0 "${envs[@]}" "$@"
      local node=${pids[-1]}
      watch="node0=$node,$watch"
      if [ $# -gt 0 ]; then
        extra=(--mysql-db "$db")
        [ -n "$mariadb_pid" ] && watch="$watch,mariadb=$mariadb_pid"
      fi
      python3 scripts/bench_archive.py sample "$out/archive/$name.json" --metrics http://127.0.0.1:18750/metrics \
        --redis-port $rport "${extra[@]}" --settings "${envs[@]}" "$@" "command=$again" &
      local sampler=$!
      "$bin/chat-bench" --admin-token $admin --label "archive-$name" --nodes 127.0.0.1:18750 --users "$users" \
        --rate "$rate" --duration-s "$secs" --watch "$watch" --json "$out/archive/.$name.bench.json" >/dev/null
      sleep "$tail"
      kill -TERM "$sampler"; wait "$sampler"
      python3 scripts/bench_archive.py attach "$out/archive/$name.json" "$out/archive/.$name.bench.json"
      rm -f "$out/archive/.$name.bench.json"
      kill -TERM "$node"; wait "$node" || true
      redis-cli -p $rport FLUSHALL >/dev/null
    }
    # The README's "before": no archive and the default retention (inboxes
    # of 10,000 entries, client ids for 24 h), as every earlier benchmark ran.
    envs=(CHAT_REDIS_URL=redis://127.0.0.1:$rport/0)
    phase no-archive-defaults "$d_plain" 3
    envs=("${hot[@]}")
    phase no-archive "$d_plain" 3
    phase archive "$d_arch" 15 CHAT_ARCHIVE_URL="mysql://parley:parley@127.0.0.1:3306/$db"
    py=.tools/venv/bin/python
    if [ ! -x "$py" ]; then scripts/tools.sh >/dev/null; fi
    "$py" -c 'import matplotlib' 2>/dev/null || .tools/venv/bin/pip install -q matplotlib
    "$py" scripts/bench_archive.py render "$out/archive"
    echo "wrote $out/archive/{no-archive-defaults,no-archive,archive}.json, $out/archive/README.md, $out/archive/archive.png"
    exit 0
    ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
py=.tools/venv/bin/python
if [ ! -x "$py" ]; then scripts/tools.sh >/dev/null; fi
"$py" -c 'import matplotlib' 2>/dev/null || .tools/venv/bin/pip install -q matplotlib
"$py" scripts/bench_report.py render "$out"
echo "wrote $out/$label.json, $out/README.md, $out/latency.png"
