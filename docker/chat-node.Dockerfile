# syntax=docker/dockerfile:1
# The chat-node image. Build from the repository root:
#   docker build -f docker/chat-node.Dockerfile -t <registry>/parley/chat-node:<tag> .
#
# One runtime definition, two ways to get the binary:
# - BINARY=build (the default): a full Rust toolchain builds it, as users
#   building with Docker do; the runtime base is distroless (glibc, CA
#   certificates, the user 65532, no shell).
# - BINARY=prebuilt: the binary is out/chat-node in the build context, and
#   RUNTIME_BASE names a base made without a registry. scripts/images.sh
#   builds this way with podman: a release build on the host, and a base of
#   the same Debian 12 glibc, CA certificates and passwd entries.
# Only the stages the final one needs are built: BINARY=prebuilt never
# pulls the Rust image.
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY=build

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p chat-node --bin chat-node \
    && mkdir /out && objcopy --strip-debug target/release/chat-node /out/chat-node

FROM scratch AS prebuilt
COPY out/chat-node /out/chat-node

FROM ${BINARY} AS binary

FROM ${RUNTIME_BASE}
COPY --from=binary /out/chat-node /usr/local/bin/chat-node
USER 65532:65532
# 8750 + ordinal x 10 for chat (one port per ordinal), 9090 for probes and metrics.
EXPOSE 8750 9090
ENTRYPOINT ["/usr/local/bin/chat-node"]
