# syntax=docker/dockerfile:1
#
# Images of the two binaries, from one build:
#   docker build --target syncd          -t syncd:0.1.0 .
#   docker build --target syncd-operator -t syncd-operator:0.1.0 .
# Without --target the last stage (syncd-operator) is built.
#
# The builder pins the exact toolchain of rust-toolchain.toml (1.95.0, a rust:1.95-bookworm image) so rustup
# downloads nothing; the runtime is distroless (glibc, libgcc, CA certificates, no shell) running as the
# `nonroot` user 65532, which the operator's pod security contexts also require.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG RUST_VERSION
# rust-toolchain.toml pins the channel and lists rustfmt and clippy, which the image's minimal profile lacks;
# naming the installed toolchain here keeps rustup from fetching components a release build does not use.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
WORKDIR /src
COPY . .
# Cache mounts keep the registry, git checkouts and target/ between builds (BuildKit). target/ is a cache, not a
# layer, so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p syncd -p syncd-operator \
 && mkdir -p /out \
 && cp target/release/syncd target/release/syncd-operator /out/

# The data plane. The operator runs it as `syncd serve` with SYNCD_* variables from a ConfigMap, the data volume
# at /var/lib/syncd and an emptyDir at /tmp (the root filesystem is read-only).
FROM gcr.io/distroless/cc-debian12:nonroot AS syncd
LABEL org.opencontainers.image.title="syncd" \
      org.opencontainers.image.description="Syncd: replicated locks, durable queues and a coherent cache" \
      org.opencontainers.image.source="https://github.com/syncd-dev/syncd" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/syncd /usr/local/bin/syncd
USER 65532:65532
EXPOSE 7080
ENTRYPOINT ["/usr/local/bin/syncd"]
CMD ["--help"]

# The operator. The Helm chart runs it as `syncd-operator run`.
FROM gcr.io/distroless/cc-debian12:nonroot AS syncd-operator
LABEL org.opencontainers.image.title="syncd-operator" \
      org.opencontainers.image.description="The Syncd Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/syncd-dev/syncd" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/syncd-operator /usr/local/bin/syncd-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/syncd-operator"]
CMD ["run"]
