# syntax=docker/dockerfile:1
#
# The mtls-metrics-proxy image: a static binary on distroless, run as the
# unprivileged user 65532. Mount the configuration and the certificates
# under /etc/mtls-metrics-proxy (read-only is enough: the proxy never writes
# there, and it re-reads the certificates when they change or on SIGHUP).
#
#   docker build -t mtls-metrics-proxy --build-arg VERSION=$(git describe --always) .
#   docker build -t diagd --target diagd .     # the example daemon
#
# Run it in the daemon's network namespace, so that the daemon's diag
# server can stay on loopback (examples/compose does the same):
#
#   docker run -d --name daemon -p 3081:3081 diagd
#   docker run --rm --network container:daemon --user "$(id -u)" \
#       -v "$PWD/examples/compose/proxy.toml:/etc/mtls-metrics-proxy/proxy.toml:ro" \
#       -v "$PWD/pki:/etc/mtls-metrics-proxy/tls:ro" mtls-metrics-proxy
#
# (--user lets the proxy read a key that dev-certs wrote with mode 0600.)
#
# The base images are pinned by tag; pin them by digest as well
# (image:tag@sha256:...) where builds must be reproducible.

# The build runs on the builder's own platform and cross-compiles, which
# a static, cgo-free binary allows.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /src

# Dependencies first, so that a change to the code alone reuses this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
# CGO_ENABLED=0 makes a static binary that needs no libc in the final
# image; -trimpath keeps the builder's paths out of it.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
    -o /out/ ./cmd/mtls-metrics-proxy ./examples/diagd

# diagd, the example daemon, for the Kubernetes and compose examples.
# Not the default target: build it with --target diagd.
FROM gcr.io/distroless/static-debian12:nonroot AS diagd
COPY --from=build /out/diagd /usr/local/bin/diagd
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/diagd"]
CMD ["--listen", "127.0.0.1:6060"]

# The proxy: the last stage, so the default target. distroless/static
# holds CA certificates, /etc/passwd with the nonroot user, and nothing
# else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mtls-metrics-proxy /usr/local/bin/mtls-metrics-proxy
# Numeric, so that Kubernetes' runAsNonRoot can tell it is not root.
USER 65532:65532
# The metrics listener (mTLS). The health listener, when configured, is
# usually 3082; publish it only where probes come from.
EXPOSE 3081
ENTRYPOINT ["/usr/local/bin/mtls-metrics-proxy"]
CMD ["run", "--config", "/etc/mtls-metrics-proxy/proxy.toml"]
