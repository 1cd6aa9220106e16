# The same Wasm OCI image as `make image`, for those who build images with a container engine: the
# "compat" layout Istio's agent reads, an image whose only content is /plugin.wasm. After `make build`:
#   docker build -t ghcr.io/you/tollgate:<version> . && docker push ghcr.io/you/tollgate:<version>
# (buildah, podman and kaniko work the same: no RUN step, nothing but the module.)
# Which is which: `make image` writes an OCI image layout without any engine, reproducibly, and prints the
# manifest digest to pin; this Dockerfile gives an image with the same content but an engine-made manifest
# (Docker's or OCI media types, a creation time), so its digest differs: pin the digest your registry shows
# for it (`docker buildx imagetools inspect`, `crane digest`). Istio reads both (pkg/wasm/imagefetcher.go in
# istio/istio: extractDockerImage and extractOCIStandardImage).
FROM scratch
COPY tollgate.wasm ./plugin.wasm
