#!/usr/bin/env bash
# Make sure the backends the tests need are installed and running on this
# machine: Redis on 127.0.0.1:6379 and RabbitMQ on 127.0.0.1:5672.
# Installs the Debian packages when missing (needs root), starts what is not
# already answering, and waits until both accept connections. Idempotent.
#
# usage: scripts/services.sh [redis] [rabbitmq]   (default: both)
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(redis rabbitmq)

log() { printf 'services: %s\n' "$*" >&2; }

apt_updated=0
install_pkg() {
  if [ "$(id -u)" -ne 0 ]; then
    log "need to install $1 but not root; install it with: sudo apt-get install $1"
    exit 1
  fi
  if [ $apt_updated -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2 secs=$3
  for _ in $(seq 1 "$secs"); do
    port_open "$port" && return 0
    sleep 1
  done
  log "$name did not open port $port within ${secs}s"
  return 1
}

start_redis() {
  if port_open 6379; then log "redis already running"; return; fi
  command -v redis-server >/dev/null || install_pkg redis-server
  # No persistence: the tests own their data and clean up after themselves.
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' \
    --appendonly no --logfile /tmp/parley-redis.log
  wait_port 6379 redis 30
  log "redis started"
}

start_rabbitmq() {
  if port_open 5672; then log "rabbitmq already running"; return; fi
  command -v rabbitmq-server >/dev/null || install_pkg rabbitmq-server
  # The Debian package may not start the service (no init system in
  # containers); start the broker detached ourselves.
  export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-rabbit@localhost}
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  if [ "$(id -u)" -eq 0 ] && id rabbitmq >/dev/null 2>&1; then
    # Run as the package's own user, so its files stay readable by it.
    su rabbitmq -s /bin/sh -c "RABBITMQ_NODENAME=$RABBITMQ_NODENAME RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached" \
      || rabbitmq-server -detached
  else
    rabbitmq-server -detached
  fi
  wait_port 5672 rabbitmq 120
  log "rabbitmq started"
}

for s in "${want[@]}"; do
  case "$s" in
    redis) start_redis ;;
    rabbitmq) start_rabbitmq ;;
    *) log "unknown service $s"; exit 2 ;;
  esac
done
