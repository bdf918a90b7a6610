#!/usr/bin/env bash
# The operator's end-to-end suite (system-tests/tests/e2e.rs): helm install
# of charts/parley-operator, kubectl apply of a ChatCluster, chat across
# nodes through /v1/route, kubectl scale down and up, a rolling spec change,
# a CEL refusal, kubectl delete and helm uninstall, against a real API
# server.
#
#   scripts/e2e.sh            against the local control plane: starts it
#                             (scripts/control-plane.sh), Redis and
#                             RabbitMQ, builds the images
#                             (scripts/images.sh build) and starts the test
#                             kubelet, which runs the operator and chat-node
#                             pods as podman containers of those images
#   PARLEY_E2E_RUNTIME=process scripts/e2e.sh
#                             the same, the pods run as local processes of
#                             the debug binaries (no podman, no release
#                             build: quicker while developing)
#   KUBECONFIG=... scripts/e2e.sh
#                             against that cluster (kind, a real one): the
#                             images must be pullable there, and pod IPs and
#                             the backends reachable from here (see README,
#                             "End-to-end suite")
#
# Settings (environment), with their defaults for the local control plane:
#   PARLEY_E2E_OPERATOR_IMAGE  parley/operator:<version> (parley/operator:e2e
#                              with PARLEY_E2E_RUNTIME=process)
#   PARLEY_E2E_IMAGE           parley/chat-node:<version> (the chat-node image)
#   PARLEY_E2E_REDIS_URL       redis://127.0.0.1:6379/0  (as the pods reach it)
#   PARLEY_E2E_AMQP_URL        amqp://guest:guest@127.0.0.1:5672/%2f
#   PARLEY_E2E_TEST_REDIS_URL, PARLEY_E2E_TEST_AMQP_URL
#                              the same backends as this machine reaches them
#                              (default: the two above)
#   PARLEY_E2E_KEEP=1          leave the control plane running afterwards
#   PARLEY_E2E_STATE           the kubelet's logs and pod files (/tmp/parley-e2e)
#   PARLEY_E2E_ADDRESS_BLOCK   pods get 127.<block>.x.y (1)
# and the control plane's PARLEY_CP_* (scripts/control-plane.sh): with
# other ports, state dir and address block, two runs do not collide.
# With the local control plane, the test kubelet's own test runs first.
# Extra arguments go to the e2e test binary.
#
# Cargo is run as `cargo test --workspace` throughout, so features unify as
# in the test suite and the dependencies are built once for this and the
# suite: cargo unifies over what it is asked to build, so `-p` or a
# `cargo build --workspace --bins` (no dev-dependencies, so tokio without
# test-util) would build them again with other features.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { echo "e2e: $*" >&2; }

# helm (and a kubectl, for a cluster given by KUBECONFIG).
PATH="$(scripts/tools.sh):$PATH"
export PATH

state=${PARLEY_E2E_STATE:-/tmp/parley-e2e}
kubelet_pid=
own_plane=0
cleanup() {
    local rc=$?
    if [ -n "$kubelet_pid" ]; then
        kill -TERM "$kubelet_pid" 2>/dev/null || true
        wait "$kubelet_pid" 2>/dev/null || true
    fi
    if [ "$own_plane" = 1 ] && [ "${PARLEY_E2E_KEEP:-}" != 1 ]; then
        scripts/control-plane.sh down
    fi
    if [ "$rc" != 0 ] && [ -d "$state/logs" ]; then
        log "failed; the pods' logs are in $state/logs, the kubelet's in $state/kubelet.log"
        for f in "$state"/logs/*.log; do
            [ -e "$f" ] || continue
            echo "--- $(basename "$f") (last 40 lines)" >&2
            tail -n 40 "$f" >&2
        done
        [ -f "$state/kubelet.log" ] && { echo "--- kubelet (last 40 lines)" >&2; tail -n 40 "$state/kubelet.log" >&2; }
    fi
    exit "$rc"
}
trap cleanup EXIT

if [ -z "${KUBECONFIG:-}" ]; then
    own_plane=1
    scripts/services.sh redis rabbitmq
    runtime=${PARLEY_E2E_RUNTIME:-podman}
    case "$runtime" in
        podman)
            scripts/images.sh build
            eval "$(scripts/images.sh env | sed 's/^/image_/')"
            export PARLEY_E2E_OPERATOR_IMAGE=${PARLEY_E2E_OPERATOR_IMAGE:-$image_operator}
            export PARLEY_E2E_IMAGE=${PARLEY_E2E_IMAGE:-$image_chat_node}
            run_pods=(--podman "$image_podman" --oci-runtime "$image_runtime")
            ;;
        process)
            target=${CARGO_TARGET_DIR:-$ROOT/target}/debug
            run_pods=(--run "parley/chat-node=$target/chat-node" --run "parley/operator=$target/parley-operator")
            ;;
        *) log "PARLEY_E2E_RUNTIME is podman or process, not $runtime"; exit 2 ;;
    esac
    log "building the workspace's programs (the test kubelet; chat-node and the operator for process pods)"
    # The test build makes every package's binaries too (for its tests).
    cargo test --locked -q --workspace --no-run
    KUBECONFIG=$(scripts/control-plane.sh up)
    export KUBECONFIG
    # The control plane's own kubectl: the same release as the API server.
    PATH="$(dirname "$(scripts/control-plane.sh env | sed -n 's/^kubectl=//p')"):$PATH"
    rm -rf "$state"
    mkdir -p "$state/logs"
    log "test kubelet: pods run with $runtime"
    "${CARGO_TARGET_DIR:-$ROOT/target}/debug/test-kubelet" "${run_pods[@]}" \
        --log-dir "$state/logs" --state-dir "$state/pods" \
        --apiserver-port "${PARLEY_CP_APISERVER_PORT:-16443}" \
        --address-block "${PARLEY_E2E_ADDRESS_BLOCK:-1}" \
        >"$state/kubelet.log" 2>&1 &
    kubelet_pid=$!
fi
log "kubectl $(kubectl version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])'), helm $(helm version --short)"

if [ "$own_plane" = 1 ]; then
    # The test kubelet's own test, on the same control plane (a Node of
    # its own; about 2 s).
    PARLEY_TEST_KUBECONFIG=$KUBECONFIG \
        cargo test --locked -q --workspace --test control_plane -- --ignored
fi
cargo test --locked -q --workspace --test e2e -- --ignored --nocapture "$@"
