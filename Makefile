# tollgate — build, test and run the Envoy filter, in its two builds from one core.
#   make build   tollgate.wasm (wasm32-wasip1, release, LTO, panic=abort) and libtollgate.so (the native Envoy
#                dynamic module, x86_64 linux, release, LTO, panic=unwind; docs/native-module.md)
#   make build-aarch64  libtollgate.so for linux aarch64 in build/aarch64/ (cross-compiled; needs rustup's
#                aarch64-unknown-linux-gnu target and Debian's gcc-aarch64-linux-gnu)
#   make image   the Wasm OCI image for Istio (an OCI image layout in build/oci/, no container engine needed);
#                prints the manifest digest to pin. IMAGE_REPO=ghcr.io/you/tollgate for the push commands shown
#   make test    clippy gate + native unit tests + the same tests on wasm32 under Node + the dynamic-module host's
#                unit tests + end-to-end tests through real Envoy, against both builds
#   make run     a local gateway (Envoy + tollgate + mock provider + OTLP receiver) until Ctrl-C;
#                TOLLGATE_RLS=1 make run adds Redis and the test rate-limit service (budgets.backend=rls)
#                TOLLGATE_BUILD=native make run runs libtollgate.so instead of tollgate.wasm
#   make fuzz    every cargo-fuzz target for FUZZ_SECONDS (default 25) each, seeded from the fixtures
#   make soak    SOAK_SECONDS (default 600) of mixed traffic at high concurrency; memory and accounting checks
# Everything needed is installed by scripts/setup.sh (idempotent).

SHELL := /bin/bash
ROOT := $(abspath .)
WASM_OUT := $(ROOT)/tollgate.wasm
# The native module. Cargo names it after its crate (libtollgate_native.so: the core is the crate `tollgate`);
# Envoy opens `lib<name>.so` for `dynamic_module_config: {name: tollgate}`, so it is copied to libtollgate.so.
NATIVE_OUT := $(ROOT)/libtollgate.so
NATIVE_ENV := CARGO_TARGET_DIR=$(ROOT)/target/native
NATIVE_CARGO := cargo --locked
NATIVE_MANIFEST := --manifest-path $(ROOT)/native/Cargo.toml
# The module the host's end-to-end tests load (tests/test_native_module.py): the same crate with the
# test-only `test-probes` feature, in its own directory under its own target dir; never ./libtollgate.so.
NATIVE_TEST_OUT := $(ROOT)/target/native-test/libtollgate.so
PY := $(ROOT)/.venv/bin/python

# Binaryen's wasm-opt, when installed (scripts/bench-setup.sh installs Debian's), shrinks the module by ~10%
# without slowing it (-O3); WASM_OPT=no skips it.
WASM_OPT ?= auto

# Prefer an installed rustup wasm32-wasip1 target (what users have); otherwise use Debian's rustc-web with
# the std sources, building std for the target ourselves.
HAVE_RUSTUP_WASM := $(shell rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 && echo yes)
# Unoptimized test binaries (the brotli encoder used to make test inputs) need more than the default 1 MiB
# wasm stack; the release module Envoy loads keeps the default.
TEST_STACK := -C link-arg=-zstack-size=16777216
# Wasm SIMD (fixed-width 128-bit SIMD, part of the Wasm 2.0 standard; V8, Envoy's default runtime and
# Istio's, and Wasmtime run it): memchr's scans and the stream path run ~1.4x faster in V8 with it
# (docs/performance.md). `make build WASM_FEATURES=` builds a module without it.
WASM_FEATURES := -C target-feature=+simd128
# The Wasm features rustc's module uses, and only those: with --all-features wasm-opt may rewrite code with
# proposals the runtime lacks (binaryen 108's -Oz emits typed function references that V8 11 refuses).
WASM_OPT_FEATURES := --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
	--enable-bulk-memory --enable-multivalue --enable-reference-types $(if $(findstring simd128,$(WASM_FEATURES)),--enable-simd)
ifeq ($(HAVE_RUSTUP_WASM),yes)
WASM_ENV := CARGO_TARGET_DIR=$(ROOT)/target/wasm CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="$(WASM_FEATURES)"
WASM_TEST_ENV := CARGO_TARGET_DIR=$(ROOT)/target/wasm-test \
	CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="$(WASM_FEATURES) $(TEST_STACK)"
WASM_STD :=
WASM_TEST_STD :=
else
WASM_ENV := PATH=/usr/bin:$$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(ROOT)/target/wasm \
	CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-L native=/usr/lib/wasm32-wasi $(WASM_FEATURES)"
WASM_TEST_ENV := PATH=/usr/bin:$$PATH RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(ROOT)/target/wasm-test \
	CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-L native=/usr/lib/wasm32-wasi $(WASM_FEATURES) $(TEST_STACK)"
WASM_STD := -Zbuild-std=std,panic_abort
WASM_TEST_STD := -Zbuild-std=std,panic_abort -Zpanic-abort-tests
endif
# Clippy for the wasm32 build (the only build that compiles `host/`): the same toolchain as `make build`,
# i.e. rustup's target or Debian's rustc-web with its matching rust-web-clippy.
WASM_CLIPPY_ENV := $(subst target/wasm,target/wasm-clippy,$(WASM_ENV))

.PHONY: all setup build build-wasm build-native build-aarch64 native-test-module image ratelimit test unit \
	native-unit wasm-unit e2e run fmt clippy clean fuzz soak bench bench-noop bench-instructions

all: build

setup:
	@scripts/setup.sh

build: build-wasm build-native

build-wasm: setup
	$(WASM_ENV) cargo build --release --target wasm32-wasip1 $(WASM_STD) -p tollgate
	@cp $(ROOT)/target/wasm/wasm32-wasip1/release/tollgate.wasm $(WASM_OUT)
	@if [ "$(WASM_OPT)" != "no" ] && command -v wasm-opt >/dev/null 2>&1; then \
		if wasm-opt -O3 $(WASM_OPT_FEATURES) --strip-debug --strip-producers $(WASM_OUT) -o $(WASM_OUT).opt \
			>$(WASM_OUT).opt.log 2>&1; then mv $(WASM_OUT).opt $(WASM_OUT) && rm -f $(WASM_OUT).opt.log && echo "wasm-opt -O3 applied"; \
		else echo "wasm-opt failed (see $(WASM_OUT).opt.log): the module is left as rustc built it"; \
			rm -f $(WASM_OUT).opt; fi; fi
	@echo "tollgate.wasm: $$(stat -c %s $(WASM_OUT)) bytes"

# Stable Rust, the host's own target (rustup's default toolchain).
build-native:
	$(NATIVE_ENV) $(NATIVE_CARGO) build --release $(NATIVE_MANIFEST)
	@cp $(ROOT)/target/native/release/libtollgate_native.so $(NATIVE_OUT)
	@echo "libtollgate.so: $$(stat -c %s $(NATIVE_OUT)) bytes"

native-test-module:
	CARGO_TARGET_DIR=$(ROOT)/target/native-test $(NATIVE_CARGO) build --release $(NATIVE_MANIFEST) --features test-probes
	@cp $(ROOT)/target/native-test/release/libtollgate_native.so $(NATIVE_TEST_OUT)

AARCH64 := aarch64-unknown-linux-gnu
build-aarch64:
	@rustup target list --installed 2>/dev/null | grep -qx $(AARCH64) || rustup target add $(AARCH64)
	@command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || { echo "needs aarch64-linux-gnu-gcc (Debian: apt-get install gcc-aarch64-linux-gnu)"; exit 1; }
	CARGO_TARGET_DIR=$(ROOT)/target/native-aarch64 CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
		$(NATIVE_CARGO) build --release $(NATIVE_MANIFEST) --target $(AARCH64)
	@mkdir -p $(ROOT)/build/aarch64
	@cp $(ROOT)/target/native-aarch64/$(AARCH64)/release/libtollgate_native.so $(ROOT)/build/aarch64/libtollgate.so
	@echo "build/aarch64/libtollgate.so: $$(stat -c %s $(ROOT)/build/aarch64/libtollgate.so) bytes"

# The image tag: Cargo.toml's version on the commit tagged v<version>, else <version>-<commit> (CHANGELOG).
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -1)
IMAGE_TAG ?= $(shell git describe --tags --exact-match --match 'v$(VERSION)' >/dev/null 2>&1 && echo $(VERSION) \
	|| echo $(VERSION)-$$(git rev-parse --short HEAD 2>/dev/null || echo dev))
IMAGE_REPO ?= ghcr.io/YOUR-ORG/tollgate
image: build-wasm
	$(PY) scripts/oci_image.py --wasm $(WASM_OUT) --out $(ROOT)/build/oci/tollgate --tag $(IMAGE_TAG) \
		--repository $(IMAGE_REPO)

unit:
	cargo test -p tollgate

# The dynamic-module host's unit tests (a fake Envoy; the probes' code included).
native-unit:
	$(NATIVE_ENV) $(NATIVE_CARGO) test $(NATIVE_MANIFEST) --features test-probes

# The test rate-limit service (testenv/ratelimit, its own workspace) for `budgets.backend = "rls"`.
ratelimit:
	cd testenv/ratelimit && CARGO_TARGET_DIR=$(ROOT)/target/ratelimit cargo build --release --locked

# The pure core's unit tests compiled to wasm32-wasip1 (32-bit usize, wasm codegen) and run under Node's WASI.
wasm-unit: setup
	$(WASM_TEST_ENV) CARGO_TARGET_WASM32_WASIP1_RUNNER="node $(ROOT)/scripts/wasi-run.mjs" \
		cargo test -p tollgate --lib --target wasm32-wasip1 $(WASM_TEST_STD) -- --test-threads=1

e2e: build native-test-module
	$(PY) -m pytest tests -q -rs

test: setup clippy unit wasm-unit native-unit e2e

run: build
	$(PY) testenv/run.py

FUZZ_SECONDS ?= 25
fuzz:
	@scripts/fuzz-setup.sh
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

SOAK_SECONDS ?= 600
SOAK_CONCURRENCY ?= 64
soak: build
	$(PY) tests/soak/soak.py --duration $(SOAK_SECONDS) --concurrency $(SOAK_CONCURRENCY)

# Performance benchmark through real Envoy (not part of `make test`): see docs/performance.md.
# BENCH_ARGS=--quick for a short smoke run. Then the instruction counts under callgrind (INSTR_ARGS, e.g.
# --breakdown to price each host call; `make bench-instructions` runs only that part).
NOOP_WASM := $(ROOT)/target/bench/tollgate_bench_noop.wasm
bench-noop: setup
	$(subst target/wasm,target/wasm-noop,$(WASM_ENV)) cargo build --release --target wasm32-wasip1 $(WASM_STD) \
		--manifest-path $(ROOT)/bench/noop/Cargo.toml
	@mkdir -p $(dir $(NOOP_WASM))
	@cp $(ROOT)/target/wasm-noop/wasm32-wasip1/release/tollgate_bench_noop.wasm $(NOOP_WASM)

bench: build bench-noop
	@scripts/bench-setup.sh
	$(PY) bench/run.py --tollgate $(WASM_OUT) --noop $(NOOP_WASM) --native $(NATIVE_OUT) $(BENCH_ARGS)
	$(PY) bench/instructions.py --tollgate $(WASM_OUT) --noop $(NOOP_WASM) --native $(NATIVE_OUT) $(INSTR_ARGS)

bench-instructions: build bench-noop
	@scripts/bench-setup.sh
	$(PY) bench/instructions.py --tollgate $(WASM_OUT) --noop $(NOOP_WASM) --native $(NATIVE_OUT) $(INSTR_ARGS)

fmt:
	cargo fmt --all
	cargo fmt --manifest-path native/Cargo.toml

# The panic lints are denied in filter/src/lib.rs (and native/src/lib.rs) for non-test code. Natively: lib +
# tests, every warning an error. On wasm32 (host glue included) and in the native host: dead code is allowed,
# because host helpers land before the features that call them.
clippy: setup
	cargo clippy -p tollgate --all-targets -- -D warnings
	$(WASM_CLIPPY_ENV) cargo clippy --target wasm32-wasip1 $(WASM_STD) -p tollgate --lib -- -D warnings -A dead_code
	$(NATIVE_ENV) $(NATIVE_CARGO) clippy $(NATIVE_MANIFEST) --all-targets --features test-probes -- -D warnings -A dead_code
	$(NATIVE_ENV) $(NATIVE_CARGO) clippy $(NATIVE_MANIFEST) --lib -- -D warnings -A dead_code

clean:
	cargo clean
	rm -f $(WASM_OUT) $(NATIVE_OUT)
