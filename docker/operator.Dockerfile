# syntax=docker/dockerfile:1
# The parley-operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t <registry>/parley/operator:<tag> .
# Multi-stage: a full Rust toolchain builds a release binary; the runtime
# image is distroless (glibc, CA certificates, no shell) and runs as the
# unprivileged user 65532.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p parley-operator --bin parley-operator \
    && cp target/release/parley-operator /parley-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /parley-operator /usr/local/bin/parley-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/parley-operator"]
