# syntax=docker/dockerfile:1
# The parley-operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t <registry>/parley/operator:<tag> .
#
# One runtime definition, two ways to get the binary (see
# docker/chat-node.Dockerfile): BINARY=build (default) compiles it in a Rust
# toolchain image onto distroless; BINARY=prebuilt takes out/parley-operator
# from the build context onto RUNTIME_BASE (scripts/images.sh, podman).
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY=build

FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p parley-operator --bin parley-operator \
    && mkdir /out && objcopy --strip-debug target/release/parley-operator /out/parley-operator

FROM scratch AS prebuilt
COPY out/parley-operator /out/parley-operator

FROM ${BINARY} AS binary

FROM ${RUNTIME_BASE}
COPY --from=binary /out/parley-operator /usr/local/bin/parley-operator
USER 65532:65532
# /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/parley-operator"]
