# One image with the three Docket services and the `docket` command, for helm/docket.
#
#   docker build -t docket:0.1.0 .
#
# The binaries are /usr/local/bin/docket-ticket, docket-audit, docket-metrics and docket.
# The image sets no entrypoint because it runs three different programs: the chart's
# Deployments name the binary in `command`. It runs as the unprivileged user 65532, which the
# chart's podSecurityContext also sets, and writes nothing outside /tmp, so it works with a
# read-only root filesystem.
#
# NOTE: no Docker engine was available where this file was written, so it has never been
# built. `make chart-check` checks that its binary paths, user and ports match the chart.

# Build stage. Rust 1.95 is the toolchain the workspace is built and tested with. It must not
# be older than the workspace's rust-version in Cargo.toml (1.89, which the locked uuid 1.29
# needs), and `make chart-check` checks that. Debian bookworm matches the runtime stage, so
# the glibc the binaries link against is present.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The contracts are compiled by a Rust build script (protox), so no protoc is needed.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p docket-ticket -p docket-audit -p docket-metrics -p docket-cli \
    && mkdir -p /out \
    && cp target/release/docket-ticket target/release/docket-audit target/release/docket-metrics target/release/docket /out/

# Runtime stage: Debian's slim image, which has glibc and libgcc, and the CA certificates
# for TLS connections to PostgreSQL or an OTLP collector.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install --yes --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 docket \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin docket
COPY --from=build /out/docket-ticket /out/docket-audit /out/docket-metrics /out/docket /usr/local/bin/
USER 65532:65532
# gRPC: ticket, audit, metrics. Prometheus /metrics: ticket, audit, metrics.
EXPOSE 50051 50052 50053 9101 9102 9103
