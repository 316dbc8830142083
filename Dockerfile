# certbound as an OCI image for Istio's WasmPlugin, built with Docker.
# (No Docker? `make oci` writes the same kind of image without it.)
#
#   docker build -t registry.example.com/certbound:0.1.0 .
#   docker push registry.example.com/certbound:0.1.0
#   # WasmPlugin.sha256: the digest `docker push` prints (sha256:<hex>, without "sha256:")
#
# The result is the "compat" variant of the Wasm image format that Istio
# reads: one layer holding /plugin.wasm, nothing else. Classic `docker build`
# gives it Docker media types (application/vnd.docker.image.rootfs.diff.tar.gzip),
# which Istio accepts as they are; `make oci` gives the OCI media types with the
# module.wasm.image/variant=compat annotation. The digests differ between the two.

# 1. Build the filter (same toolchain and flags as `make build`).
FROM rust:1.95-slim AS build
WORKDIR /src
RUN rustup target add wasm32-wasip1
COPY . .
RUN cargo build --release --locked --target wasm32-wasip1

# 2. The image: the module as /plugin.wasm, and nothing else.
FROM scratch
COPY --from=build /src/target/wasm32-wasip1/release/certbound.wasm /plugin.wasm
