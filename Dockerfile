# OCI image for Istio's WasmPlugin (`url: oci://...`), in the "compat" layout: an image whose only
# content is /plugin.wasm. Build from the repository root after building the module:
#   cp <built module> tollgate.wasm
#   docker build -t ghcr.io/example/tollgate:0.1.0 . && docker push ghcr.io/example/tollgate:0.1.0
# (buildah/podman/kaniko work the same: no RUN step, nothing but the module.)
FROM scratch
COPY tollgate.wasm ./plugin.wasm
