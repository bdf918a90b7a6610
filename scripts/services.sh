#!/usr/bin/env bash
# Make sure the backends the tests need are installed and running on this
# machine: Redis on 127.0.0.1:6379, RabbitMQ on 127.0.0.1:5672, and the SQL
# archives MariaDB on 127.0.0.1:3306 and PostgreSQL on 127.0.0.1:5432.
# Installs the Debian packages when missing (needs root), starts what is not
# already answering, and waits until each accepts connections. Idempotent.
#
# Both SQL servers get a login parley (password parley) that may create and
# drop databases, and a database parley:
#   mysql://parley:parley@127.0.0.1:3306/parley
#   postgres://parley:parley@127.0.0.1:5432/parley
# Their data lives in /var/lib/parley/{mariadb,postgres}, their logs in
# /tmp/parley-*.log.
#
# usage: scripts/services.sh [redis] [rabbitmq] [mariadb] [postgres]   (default: all)
set -euo pipefail

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(redis rabbitmq mariadb postgres)

log() { printf 'services: %s\n' "$*" >&2; }

apt_updated=0
install_pkg() {
  if [ "$(id -u)" -ne 0 ]; then
    log "need to install $1 but not root; install it with: sudo apt-get install $1"
    exit 1
  fi
  if [ $apt_updated -eq 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$1" >/dev/null
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

# No init system in containers (and the Debian packages' policy-rc.d keeps
# them from starting anything): the SQL servers are started by hand, on data
# directories of our own, so a package's default cluster is never touched.
sql_data=/var/lib/parley

start_mariadb() {
  local dir=$sql_data/mariadb
  if port_open 3306; then
    log "mariadb already running"
  else
    command -v mariadbd >/dev/null || install_pkg mariadb-server
    mkdir -p "$dir" /run/mysqld
    chown mysql:mysql "$dir" /run/mysqld
    if [ ! -d "$dir/mysql" ]; then
      # root@localhost by unix socket only; no test database.
      mariadb-install-db --no-defaults --user=mysql --datadir="$dir" \
        --auth-root-authentication-method=socket --skip-test-db \
        >/tmp/parley-mariadb-install.log 2>&1
    fi
    touch /tmp/parley-mariadb.log
    chown mysql /tmp/parley-mariadb.log
    # --no-defaults: what /etc/mysql says does not matter; utf8mb4 because
    # the archive holds chat text.
    setsid mariadbd --no-defaults --user=mysql --datadir="$dir" \
      --bind-address=127.0.0.1 --port=3306 \
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --log-error=/tmp/parley-mariadb.log </dev/null >/dev/null 2>&1 &
    wait_port 3306 mariadb 60
    log "mariadb started"
  fi
  provision_mariadb
}

# The parley login, able to create and drop the databases the tests make.
# Done through root's unix socket, unless the login already works.
provision_mariadb() {
  local rights
  rights=$(mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P 3306 -u parley \
    --password=parley -D parley -N -B -e "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES
      WHERE PRIVILEGE_TYPE IN ('CREATE', 'DROP')
      AND GRANTEE = CONCAT('''', REPLACE(CURRENT_USER(), '@', '''@'''), '''')" 2>/dev/null) || true
  [ "$rights" = 2 ] && return
  # Every privilege on every database: this is a test server on 127.0.0.1,
  # and MariaDB cannot limit a login to the databases it created.
  mariadb --no-defaults --socket=/run/mysqld/mysqld.sock -u root <<'SQL'
CREATE USER IF NOT EXISTS 'parley'@'localhost' IDENTIFIED BY 'parley';
CREATE USER IF NOT EXISTS 'parley'@'127.0.0.1' IDENTIFIED BY 'parley';
ALTER USER 'parley'@'localhost' IDENTIFIED BY 'parley';
ALTER USER 'parley'@'127.0.0.1' IDENTIFIED BY 'parley';
GRANT ALL PRIVILEGES ON *.* TO 'parley'@'localhost';
GRANT ALL PRIVILEGES ON *.* TO 'parley'@'127.0.0.1';
CREATE DATABASE IF NOT EXISTS parley;
SQL
  log "mariadb: login parley and database parley made"
}

# The newest installed PostgreSQL's binaries, or the version a data
# directory was made with.
pg_bindir() {
  if [ -f "$sql_data/postgres/PG_VERSION" ]; then
    echo "/usr/lib/postgresql/$(cat "$sql_data/postgres/PG_VERSION")/bin"
  else
    find /usr/lib/postgresql -maxdepth 3 -path '*/bin/postgres' 2>/dev/null \
      | sort -V | tail -n 1 | xargs -r dirname
  fi
}

# PostgreSQL refuses to run as root.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local dir=$sql_data/postgres sock=/var/run/postgresql bin
  if port_open 5432; then
    log "postgres already running"
  else
    bin=$(pg_bindir)
    if [ ! -x "$bin/postgres" ]; then
      install_pkg postgresql
      bin=$(pg_bindir)
    fi
    mkdir -p "$dir" "$sock"
    chown postgres:postgres "$dir" "$sock"
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      # Password (scram) over TCP, the OS user on the socket.
      as_postgres "$bin/initdb" -D "$dir" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/tmp/parley-postgres-initdb.log
    fi
    touch /tmp/parley-postgres.log
    chown postgres /tmp/parley-postgres.log
    as_postgres "$bin/pg_ctl" -D "$dir" -l /tmp/parley-postgres.log -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories=$sock" \
      start >/dev/null
    wait_port 5432 postgres 60
    log "postgres started"
  fi
  provision_postgres
}

# The parley login (CREATEDB) and its database, through the postgres
# superuser on the socket, unless the login already works; then password
# login over TCP, fixing pg_hba.conf if it does not allow it.
provision_postgres() {
  local bin psql sock=/var/run/postgresql
  bin=$(pg_bindir)
  psql=$bin/psql
  [ -x "$psql" ] || psql=psql
  tcp_ok() {
    [ "$(PGPASSWORD=parley "$psql" -h 127.0.0.1 -p 5432 -U parley -d parley -tAc \
      "SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user" 2>/dev/null)" = t ]
  }
  tcp_ok && return
  su_sql() { as_postgres "$psql" -h "$sock" -p 5432 -U postgres -d postgres -qtA -v ON_ERROR_STOP=1 -c "$1"; }
  if [ "$(su_sql "SELECT 1 FROM pg_roles WHERE rolname = 'parley'")" = 1 ]; then
    su_sql "ALTER ROLE parley LOGIN CREATEDB PASSWORD 'parley'"
  else
    su_sql "CREATE ROLE parley LOGIN CREATEDB PASSWORD 'parley'"
  fi
  [ "$(su_sql "SELECT 1 FROM pg_database WHERE datname = 'parley'")" = 1 ] \
    || su_sql "CREATE DATABASE parley OWNER parley"
  if ! tcp_ok; then
    local hba
    hba=$(su_sql "SHOW hba_file")
    sed -i '1i host all parley 127.0.0.1/32 scram-sha-256' "$hba"
    su_sql "SELECT pg_reload_conf()" >/dev/null
    log "postgres: password login for parley over TCP added to $hba"
  fi
  tcp_ok || { log "postgres: parley cannot log in over TCP"; exit 1; }
  log "postgres: login parley and database parley made"
}

for s in "${want[@]}"; do
  case "$s" in
    redis) start_redis ;;
    rabbitmq) start_rabbitmq ;;
    mariadb) start_mariadb ;;
    postgres) start_postgres ;;
    *) log "unknown service $s"; exit 2 ;;
  esac
done
