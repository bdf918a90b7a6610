# syntax=docker/dockerfile:1
# The chat-node image. Build from the repository root:
#   docker build -f docker/chat-node.Dockerfile -t <registry>/parley/chat-node:<tag> .
# Multi-stage: a full Rust toolchain builds a release binary; the runtime
# image is distroless (glibc, CA certificates, no shell) and runs as the
# unprivileged user 65532.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p chat-node --bin chat-node \
    && cp target/release/chat-node /chat-node

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /chat-node /usr/local/bin/chat-node
USER 65532:65532
# 8750 + ordinal x 10 for chat (one port per ordinal), 9090 for probes and metrics.
EXPOSE 8750 9090
ENTRYPOINT ["/usr/local/bin/chat-node"]
