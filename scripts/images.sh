#!/usr/bin/env bash
# The container images, built and tested here with podman (no Docker
# engine, no registry):
#
#   scripts/images.sh build   release binaries, a base image made here, then
#                             parley/chat-node:<version> and
#                             parley/operator:<version> from the Dockerfiles
#                             in docker/ (BINARY=prebuilt)
#   scripts/images.sh test    run each image as users will: uid 65532, a
#                             read-only root, no shell; chat-node answers
#                             /healthz and a chat round trip, the operator
#                             prints its CRD-missing hint against an empty
#                             API server; print the sizes
#   scripts/images.sh env     print what the kubelet needs to run them
#                             (podman, the OCI runtime wrapper, the tags)
#
# The base image (localhost/parley/base-cc:<hash>) stands for distroless
# cc-debian12: the binaries' shared libraries (ldd; this machine is
# Debian 12, the same glibc), CA certificates, passwd and group entries for
# root, nobody and nonroot (65532), /tmp and /home/nonroot. It is made by
# `podman import` of a root built from those files, no pull; podman's
# storage (/var/lib/containers) keeps it, and a base with the same content
# is not made again.
#
# podman runs containers through scripts/oci-runtime.sh, which drops
# process.rlimits from each bundle (this sandbox refuses setrlimit).
#
# Installs podman, runc and jq with apt when they are missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { echo "images: $*" >&2; }
die() { log "$*"; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' chat-node/Cargo.toml | head -n 1)
CHAT_IMAGE=parley/chat-node:$VERSION
OPERATOR_IMAGE=parley/operator:$VERSION
RUNTIME=$ROOT/scripts/oci-runtime.sh
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

podman_() { podman --runtime "$RUNTIME" "$@"; }

install_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v jq >/dev/null || missing+=(jq)
    command -v objcopy >/dev/null || missing+=(binutils)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
    fi
}

binaries() {
    log "release build of chat-node and parley-operator"
    cargo build --release --locked -q -p chat-node --bin chat-node -p parley-operator --bin parley-operator
}

# The base image's tag: a hash of what goes in it.
base() {
    local root libs lib hash tag
    root=$(mktemp -d)
    mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot" "$root/usr/local/bin"
    chmod 1777 "$root/tmp"
    chown 65532:65532 "$root/home/nonroot"
    cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
    cat >"$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
    echo "hosts: files dns" >"$root/etc/nsswitch.conf"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    # Every shared library either binary loads, at the path it is loaded
    # from (the loader included).
    libs=$(ldd "$TARGET/release/chat-node" "$TARGET/release/parley-operator" \
        | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u)
    for lib in $libs; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    hash=$( (cd "$root" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12)
    tag=localhost/parley/base-cc:$hash
    if ! podman image exists "$tag"; then
        log "making the base image $tag"
        tar -C "$root" --numeric-owner -cf - . | podman import -q - "$tag" >/dev/null
    fi
    rm -rf "$root"
    echo "$tag"
}

build() {
    install_tools
    binaries
    local base_tag ctx
    base_tag=$(base)
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' RETURN
    mkdir -p "$ctx/out"
    for bin in chat-node parley-operator; do
        objcopy --strip-debug "$TARGET/release/$bin" "$ctx/out/$bin"
    done
    log "building $CHAT_IMAGE and $OPERATOR_IMAGE on $base_tag"
    podman build -q --build-arg BINARY=prebuilt --build-arg RUNTIME_BASE="$base_tag" \
        -f docker/chat-node.Dockerfile -t "$CHAT_IMAGE" "$ctx" >/dev/null
    podman build -q --build-arg BINARY=prebuilt --build-arg RUNTIME_BASE="$base_tag" \
        -f docker/operator.Dockerfile -t "$OPERATOR_IMAGE" "$ctx" >/dev/null
    sizes
}

sizes() {
    for image in "$CHAT_IMAGE" "$OPERATOR_IMAGE"; do
        printf 'images: %-28s %s MB\n' "$image" \
            "$(podman image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.1f", $1 / 1e6 }')" >&2
    done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

test_() {
    install_tools
    for image in "$CHAT_IMAGE" "$OPERATOR_IMAGE"; do
        podman image exists "$image" || die "$image is not built: scripts/images.sh build"
        # No shell in the image.
        if podman_ run --rm --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
            die "$image has a shell"
        fi
    done

    # chat-node: non-root, read-only root, healthy, a chat round trip.
    local port health
    name=parley-image-test-$$
    port=$(free_port); health=$(free_port)
    trap 'podman_ rm -f -t 0 "$name" >/dev/null 2>&1 || true' EXIT
    podman_ run -d --name "$name" --network host --read-only \
        -e CHAT_BIND=127.0.0.1 -e CHAT_BASE_PORT="$port" -e CHAT_HEALTH_PORT="$health" \
        -e CHAT_ADMIN_TOKEN=image-test "$CHAT_IMAGE" >/dev/null
    local ok=
    for _ in $(seq 1 100); do
        if [ "$(curl -fsS "http://127.0.0.1:$health/healthz" 2>/dev/null)" = ok ]; then ok=1; break; fi
        sleep 0.1
    done
    [ -n "$ok" ] || { podman logs "$name" >&2; die "chat-node did not answer /healthz"; }
    # The process's real uid, read from the host (no exec into the image).
    local pid uid
    pid=$(podman inspect --format '{{.State.Pid}}' "$name")
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
    [ "$uid" = 65532 ] || die "chat-node runs as uid $uid, not 65532"
    [ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true ] \
        || die "the root filesystem is not read-only"
    PARLEY_IMAGE_CHAT=127.0.0.1:$port PARLEY_IMAGE_ADMIN=image-test \
        cargo test --locked -q --workspace --test image -- --ignored
    podman_ stop -t 10 "$name" >/dev/null
    local code
    code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
    [ "$code" = 0 ] || { podman logs "$name" >&2; die "chat-node exited $code after SIGTERM"; }
    podman logs "$name" 2>&1 | grep -q "drained; bye" || die "no clean drain in chat-node's log"
    podman_ rm -f "$name" >/dev/null
    log "$CHAT_IMAGE: uid 65532, read-only root, no shell, /healthz, a chat round trip, a clean SIGTERM"

    # The operator against an empty API server of its own.
    local cp_state=/tmp/parley-images-cp
    export PARLEY_CP_STATE=$cp_state PARLEY_CP_APISERVER_PORT=16543 \
        PARLEY_CP_ETCD_PORT=12479 PARLEY_CP_ETCD_PEER_PORT=12480 PARLEY_CP_CONTROLLER_MANAGER_PORT=20357
    local kubeconfig out kubectl flat
    kubeconfig=$(scripts/control-plane.sh up)
    trap 'scripts/control-plane.sh down >/dev/null 2>&1 || true; rm -rf "$flat"' EXIT
    kubectl=$(scripts/control-plane.sh env | sed -n 's/^kubectl=//p')
    # The admin credentials inlined, readable by the image's user.
    flat=$(mktemp -d)
    "$kubectl" --kubeconfig "$kubeconfig" config view --raw --flatten >"$flat/kubeconfig"
    chmod 0755 "$flat"; chmod 0644 "$flat/kubeconfig"
    out=$(podman_ run --rm --network host --read-only -v "$flat:/config:ro" \
        -e KUBECONFIG=/config/kubeconfig "$OPERATOR_IMAGE" 2>&1) && die "the operator started without its CRD: $out"
    case "$out" in
        *"the ChatCluster CRD is not installed"*"kubectl apply -f crds/chatcluster.yaml"*) ;;
        *) die "the operator did not print its CRD hint: $out" ;;
    esac
    scripts/control-plane.sh down >/dev/null
    trap - EXIT
    log "$OPERATOR_IMAGE: uid 65532, read-only root, no shell, the CRD-missing hint against an empty API server"
    sizes
}

env_() {
    cat <<ENV
podman=$(command -v podman || true)
runtime=$RUNTIME
chat_node=$CHAT_IMAGE
operator=$OPERATOR_IMAGE
ENV
}

case "${1:-}" in
    build) build ;;
    test) test_ ;;
    env) env_ ;;
    *) echo "usage: $0 build|test|env" >&2; exit 2 ;;
esac
