# kubeship agent image: `docker build -t kubeship .` from the repository root.
#
# Two stages: the release binary is built in the Rust image, and only that binary is
# copied into a distroless runtime (glibc and libgcc for the binary, CA certificates for
# TLS to AWS; no shell, no package manager). The agent writes only to its state dir (a
# hostPath volume), so the image runs with a read-only root filesystem.
#
# Base images are pinned: the builder by its exact version tag (the toolchain the tests
# use), the runtime by digest (distroless publishes no version tags). Refresh the digest
# with `crane digest gcr.io/distroless/cc-debian13:latest` (or let Renovate/Dependabot
# do it); both images are Debian 13, so the binary and the runtime share one glibc.

FROM rust:1.95.0-slim-trixie AS build
WORKDIR /src
# Only what the workspace needs (see .dockerignore): manifests and lock first, then
# the member crates. `tests` is a workspace member, so cargo needs it to load the
# workspace even though only the agent is built.
COPY Cargo.toml Cargo.lock ./
COPY agent agent
COPY parsers parsers
COPY tests tests
# The release profile keeps line tables for perf (debug = 1); the image does not need
# them: strip debug info, keep symbols so a panic's backtrace still names functions.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked -p kubeship \
    && install -D -m 0555 target/release/kubeship /out/kubeship

FROM gcr.io/distroless/cc-debian13@sha256:4594d59540d1948417f6ca2829ddd9294493a7c68b7528f4dd459de7f203a750
LABEL org.opencontainers.image.title="kubeship" \
      org.opencontainers.image.description="Per-node Kubernetes log agent: container logs to CloudWatch Logs" \
      org.opencontainers.image.source="https://github.com/kubeship/kubeship" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/kubeship /usr/local/bin/kubeship
# rustls-native-certs reads the system roots; say where they are instead of probing.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# uid 0, with every capability dropped by the pod's securityContext
# (deploy/kustomize/base/daemonset.yaml). The kubelet and the container runtime write
# container logs under /var/log/pods as root-owned files of mode 0640, so a
# non-root uid cannot read them, and the alternative, CAP_DAC_READ_SEARCH, lets a
# process read every file on the node. Root without capabilities reads the logs
# through the owner bits and writes its own state dir (/var/lib/kubeship, created by
# the kubelet, root-owned) the same way; it cannot override file permissions, change
# ownership, load modules or use any other privileged operation, and
# allowPrivilegeEscalation: false keeps it from gaining capabilities through exec.
USER 0:0
EXPOSE 2020
ENTRYPOINT ["/usr/local/bin/kubeship"]
CMD ["run", "--config", "/etc/kubeship/kubeship.yaml"]
