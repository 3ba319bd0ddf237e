# The filter as an OCI image for Istio's WasmPlugin (`url: oci://...`), in the "compat" layout of
# the Wasm image specification Istio reads: a single layer holding the module as /plugin.wasm.
# For Docker users: run `make dist` first (it writes dist/kiali_header_auth.wasm). `make image`
# builds the same image without Docker (buildah), and `make push` pushes it and prints the digest.
#
# Push with a tool that keeps the image to one manifest (e.g. `docker buildx build
# --provenance=false --sbom=false --push`), then put the pushed MANIFEST digest in
# deploy/istio/wasmplugin.yaml's `sha256` (for oci:// URLs Istio checks the manifest digest, not the
# checksum of the .wasm file).
FROM scratch
COPY dist/kiali_header_auth.wasm ./plugin.wasm
