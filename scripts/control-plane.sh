#!/usr/bin/env bash
# A local Kubernetes control plane on loopback, for the operator's
# end-to-end tests: etcd, kube-apiserver and kube-controller-manager (and a
# kubectl) built from the Kubernetes release pinned in
# tools/control-plane/go.mod.
#
#   scripts/control-plane.sh up      build if needed, start, wait for /readyz,
#                                    print the admin kubeconfig's path
#   scripts/control-plane.sh down    stop everything, remove the state dir
#   scripts/control-plane.sh build   only build (or check) the cached binaries
#   scripts/control-plane.sh env     print the paths and ports in use
#
# `up` and `down` are idempotent: `up` on a running plane only prints the
# kubeconfig; `down` on a stopped one does nothing.
#
# The binaries are built once per pinned release and go.sum and cached
# outside the work tree (PARLEY_CP_CACHE, /var/cache/parley/control-plane by
# default; the Go module and build caches live there too). Certificates, the
# ServiceAccount signing key, etcd's data and the logs are made afresh by
# each `up` in PARLEY_CP_STATE (/tmp/parley-control-plane by default).
#
# Ports, all on 127.0.0.1 and clear of Redis, RabbitMQ, MariaDB, PostgreSQL
# and chat-node's 8750 and up; each can be overridden:
#   PARLEY_CP_APISERVER_PORT           16443
#   PARLEY_CP_ETCD_PORT                12379  (clients)
#   PARLEY_CP_ETCD_PEER_PORT           12380
#   PARLEY_CP_CONTROLLER_MANAGER_PORT  20257  (its healthz, HTTPS)
#
# There is no kubelet and no scheduler: pods are created and stay Pending.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODULE_DIR=$ROOT/tools/control-plane

# The release is written once, in go.mod; everything here derives from it.
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$MODULE_DIR/go.mod")
[ -n "$K8S_VERSION" ] || { echo "control-plane: no k8s.io/kubernetes version in $MODULE_DIR/go.mod" >&2; exit 1; }

CACHE=${PARLEY_CP_CACHE:-/var/cache/parley/control-plane}
BIN=$CACHE/$K8S_VERSION/bin
STATE=${PARLEY_CP_STATE:-/tmp/parley-control-plane}
APISERVER_PORT=${PARLEY_CP_APISERVER_PORT:-16443}
ETCD_PORT=${PARLEY_CP_ETCD_PORT:-12379}
ETCD_PEER_PORT=${PARLEY_CP_ETCD_PEER_PORT:-12380}
KCM_PORT=${PARLEY_CP_CONTROLLER_MANAGER_PORT:-20257}
# The Service network only names ClusterIPs (nothing routes to them here);
# its first address is the `kubernetes` Service and goes into the API
# server's certificate.
SERVICE_CIDR=${PARLEY_CP_SERVICE_CIDR:-10.96.0.0/12}
SERVICE_IP=${PARLEY_CP_SERVICE_IP:-10.96.0.1}

PKI=$STATE/pki
KUBECONFIG_ADMIN=$STATE/admin.kubeconfig

log() { echo "control-plane: $*" >&2; }
die() { log "$*"; exit 1; }

# --- build -----------------------------------------------------------------

# The stamp is go.mod and go.sum's hash: a changed pin rebuilds even when the
# Kubernetes version (and so the directory) stays the same.
module_hash() { cat "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum" | sha256sum | cut -c1-16; }

build() {
    local hash
    hash=$(module_hash)
    if [ -f "$BIN/.stamp" ] && [ "$(cat "$BIN/.stamp")" = "$hash" ] \
        && [ -x "$BIN/etcd" ] && [ -x "$BIN/kube-apiserver" ] \
        && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kubectl" ]; then
        return 0
    fi
    command -v go >/dev/null || die "go is not installed; it is needed once to build $BIN"
    log "building Kubernetes $K8S_VERSION (etcd, kube-apiserver, kube-controller-manager, kubectl) into $BIN; this takes a while once"
    mkdir -p "$BIN" "$CACHE/go/mod" "$CACHE/go/cache"
    rm -f "$BIN/.stamp"
    # What a release build stamps in, so `kubectl version` and the API
    # server's /version say which release this is.
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    local start=$SECONDS
    # Nice and two parallel jobs: the build shares the machine's two cores.
    (
        cd "$MODULE_DIR"
        export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/cache GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
        # The main packages are go.mod's `tool` block, named there once.
        # shellcheck disable=SC2046
        nice -n 10 go build -p 2 -trimpath -ldflags "$ldflags" -o "$BIN/" \
            $(awk '/^tool \(/ { on = 1; next } on && /^\)/ { exit } on { print $1 }' go.mod)
    )
    # etcd's main package is its module's root, go.etcd.io/etcd/server/v3,
    # which go build names after the last element that is not a version.
    mv "$BIN/server" "$BIN/etcd"
    echo "$hash" >"$BIN/.stamp"
    # The build cache (about 4 GB) only speeds up rebuilding this same pin,
    # which the stamp already skips; a new pin recompiles nearly all of it.
    # Kept while a build fails, so a retry resumes; the module cache stays.
    GOCACHE=$CACHE/go/cache go clean -cache
    log "built in $((SECONDS - start)) s"
}

# --- certificates and kubeconfigs ------------------------------------------

# One CA signs every certificate; the API server trusts it for clients and
# etcd for the API server. Keys are ECDSA P-256 (fast to make); the
# ServiceAccount signing key is RSA, the algorithm every token consumer knows.
pki() {
    mkdir -p "$PKI"
    (
        cd "$PKI"
        umask 077
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
        openssl req -x509 -new -key ca.key -days 30 -subj "/CN=parley-control-plane-ca" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
            -out ca.crt 2>/dev/null
        cert apiserver "/CN=kube-apiserver" serverAuth \
            "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$SERVICE_IP"
        cert etcd "/CN=etcd" serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1"
        cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client" clientAuth
        cert admin "/O=system:masters/CN=parley-admin" clientAuth
        cert controller-manager "/CN=system:kube-controller-manager" clientAuth
        cert controller-manager-serving "/CN=kube-controller-manager" serverAuth "DNS:localhost,IP:127.0.0.1"
        cert front-proxy-client "/CN=front-proxy-client" clientAuth
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
        openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    )
}

# cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
cert() {
    local name=$1 subject=$2 eku=$3 san=${4:-}
    openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
        -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

# kubeconfig FILE USER: a kubeconfig for USER's client certificate.
kubeconfig() {
    local file=$1 user=$2
    cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: parley
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$user.crt
    client-key: $PKI/$user.key
contexts:
- name: parley
  context:
    cluster: parley
    user: $user
current-context: parley
KUBECONFIG
    chmod 600 "$file"
}

# --- processes -------------------------------------------------------------

pidfile() { echo "$STATE/$1.pid"; }

# Whether COMPONENT's recorded pid is alive and still our binary (a pid left
# from a reboot may belong to anything by now).
running() {
    local pid
    local pid exe
    pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    # " (deleted)": the binary was rebuilt under a running process.
    [ "$exe" = "$BIN/$1" ] || [ "$exe" = "$BIN/$1 (deleted)" ]
}

# start COMPONENT ARGS...: in its own session, so it outlives this script,
# with its output in STATE/COMPONENT.log.
start() {
    local name=$1; shift
    setsid "$BIN/$name" "$@" >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$(pidfile "$name")"
}

# wait_for WHAT SECONDS COMPONENT COMMAND...: until COMMAND succeeds. If
# COMPONENT exits or time runs out, shows its log's tail and stops whatever
# was started (the logs stay in STATE until the next `up` or `down`).
wait_for() {
    local what=$1 limit=$2 component=$3; shift 3
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        # kill -0, not `running`: just after the fork the pid is still setsid.
        if ! kill -0 "$(cat "$(pidfile "$component")")" 2>/dev/null; then
            tail -n 30 "$STATE/$component.log" >&2
            stop_all
            die "$component exited before $what"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$STATE/$component.log" >&2
            stop_all
            die "no $what after ${limit} s"
        fi
        sleep 0.5
    done
}

port_free() {
    ! ss -Hltn "sport = :$1" | grep -q .
}

https_ok() { # URL CERT-NAME: the body is exactly "ok"
    [ "$(curl -sf --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/$2.crt" --key "$PKI/$2.key" "$1")" = ok ]
}

etcd_healthy() {
    curl -sf --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
        --key "$PKI/apiserver-etcd-client.key" "https://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

# The ServiceAccount controller has made `default` in `default`: the
# controller manager works, and pods can be created.
default_serviceaccount() {
    "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" -n default get serviceaccount default
}

up() {
    if running etcd && running kube-apiserver && running kube-controller-manager \
        && https_ok "https://127.0.0.1:$APISERVER_PORT/readyz" admin \
        && https_ok "https://127.0.0.1:$KCM_PORT/healthz" admin; then
        echo "$KUBECONFIG_ADMIN"
        return 0
    fi
    # Half a plane (a crash, a reboot): start again from nothing.
    [ ! -e "$STATE" ] || down
    build
    for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT"; do
        port_free "$port" || die "port $port on 127.0.0.1 is taken; set the PARLEY_CP_*_PORT variables (see $0)"
    done
    local start_time=$SECONDS
    mkdir -p "$STATE"
    pki
    kubeconfig "$KUBECONFIG_ADMIN" admin
    kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager

    # fsync off: the data lives as long as one test run.
    start etcd \
        --name parley --data-dir "$STATE/etcd" \
        --listen-client-urls "https://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "https://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "parley=http://127.0.0.1:$ETCD_PEER_PORT" \
        --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" \
        --trusted-ca-file "$PKI/ca.crt" --client-cert-auth \
        --unsafe-no-fsync --log-level warn
    wait_for "etcd health" 30 etcd etcd_healthy

    # No endpoint reconciler: it refuses a loopback address, and nothing here
    # could route to the `kubernetes` Service anyway (a process in a "pod"
    # must be told https://127.0.0.1:$APISERVER_PORT instead).
    start kube-apiserver \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
        --etcd-servers "https://127.0.0.1:$ETCD_PORT" \
        --etcd-cafile "$PKI/ca.crt" \
        --etcd-certfile "$PKI/apiserver-etcd-client.crt" --etcd-keyfile "$PKI/apiserver-etcd-client.key" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --authorization-mode Node,RBAC \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/sa.pub" \
        --service-account-signing-key-file "$PKI/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --allow-privileged \
        --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
        --endpoint-reconciler-type none
    wait_for "/readyz from kube-apiserver" 120 kube-apiserver \
        https_ok "https://127.0.0.1:$APISERVER_PORT/readyz" admin

    # The front proxy's settings (above) are what the controller manager's
    # own authentication reads from the cluster; without them it logs a
    # missing CA bundle every few seconds.
    # Every controller under its own ServiceAccount, as in a real cluster; the
    # signing key also turns on the legacy token controller.
    start kube-controller-manager \
        --kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
        --tls-cert-file "$PKI/controller-manager-serving.crt" \
        --tls-private-key-file "$PKI/controller-manager-serving.key" \
        --use-service-account-credentials \
        --service-account-private-key-file "$PKI/sa.key" \
        --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --leader-elect=false
    wait_for "/healthz from kube-controller-manager" 60 kube-controller-manager \
        https_ok "https://127.0.0.1:$KCM_PORT/healthz" admin
    wait_for "the default ServiceAccount" 60 kube-controller-manager default_serviceaccount

    log "up in $((SECONDS - start_time)) s; kubectl: $BIN/kubectl; logs: $STATE/*.log"
    echo "$KUBECONFIG_ADMIN"
}

stop_all() {
    local component pid
    # The controller manager first, etcd last: nothing logs a lost backend.
    for component in kube-controller-manager kube-apiserver etcd; do
        running "$component" || continue
        pid=$(cat "$(pidfile "$component")")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            running "$component" || break
            sleep 0.2
        done
        ! running "$component" || kill -KILL "$pid" 2>/dev/null || true
    done
}

down() {
    stop_all
    rm -rf "$STATE"
}

env_() {
    cat <<ENV
version=$K8S_VERSION
bin=$BIN
kubectl=$BIN/kubectl
state=$STATE
kubeconfig=$KUBECONFIG_ADMIN
apiserver=https://127.0.0.1:$APISERVER_PORT
etcd=https://127.0.0.1:$ETCD_PORT
ENV
}

main() {
    case "${1:-}" in
        up) up ;;
        down) down ;;
        build) build ;;
        env) env_ ;;
        *) echo "usage: $0 up|down|build|env" >&2; exit 2 ;;
    esac
}

# On one line: bash reads a script as it runs, and an edit (a checkout of
# another branch, say) during an hour-long build must not run the new tail.
main "$@"; exit
