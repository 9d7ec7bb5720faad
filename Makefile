# Burrow's verbs. `make demo` and `make test` work on a fresh machine: each installs what it needs.
SHELL := /bin/bash
CARGO ?= cargo
PLUGIN_TARGET := wasm32-wasip2
PLUGIN_DIR := target/plugins
# A Rust plugin is a crate (plugins/NAME/Cargo.toml); a Python plugin is plugins/NAME/plugin.py,
# built with componentize-py by plugin-sdk/python/build.sh (Cargo.toml's workspace excludes it).
RUST_PLUGINS := $(patsubst plugins/%/Cargo.toml,%,$(wildcard plugins/*/Cargo.toml))
PYTHON_PLUGINS := $(patsubst plugins/%/plugin.py,%,$(wildcard plugins/*/plugin.py))
PYTHON_PLUGIN_FILES := $(PYTHON_PLUGINS:%=$(PLUGIN_DIR)/%.wasm)
# What every Python plugin is built from besides its own files.
PYTHON_SDK := $(wildcard plugin-sdk/python/burrow_plugin/*.py) plugin-sdk/python/build.sh \
  plugin-sdk/python/requirements.txt $(wildcard wit/*.wit)

.PHONY: demo test bench plugins setup python lint unit python-unit clean-plugins broker chaos sim peers

## demo: run the main job on an embedded Kafka with the example plugin
demo: setup plugins
	$(CARGO) run --release -p burrow -- demo

## test: every test there is: lint, unit, property, plugin, integration, end-to-end
test: setup plugins broker lint python-unit unit

# The suite builds without rustc's incremental cache: a clean clone (CI) never reuses it, and it
# is a third of a debug build's disk (1.6 of 5.9 GB). `cargo test` by hand keeps it.
lint unit: export CARGO_INCREMENTAL = 0

# The end-to-end tests (tests/) run the `burrow` binary this same build made (BURROW_BIN), rather
# than building it again with other features.
# Every test binary's `test result:` line is summed into one closing line, so a reader (or CI)
# sees the whole suite's count last rather than the last doc-test crate's.
unit:
	@mkdir -p target
	set -o pipefail; { BURROW_BIN=$${CARGO_TARGET_DIR:-$(CURDIR)/target}/debug/burrow $(CARGO) test --workspace --all-targets && $(CARGO) test --workspace --doc; } 2>&1 | tee target/test.log
	@bash scripts/test-summary.sh target/test.log

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: the benchmark program (release builds): one table of medians against same-run
## baselines, written to bench/results/latest.md and latest.svg. BENCH_ARGS passes flags
## (e.g. BENCH_ARGS="--quick --only B3,B4"); see bench/README.md. The WASM runtime's own
## micro-bench is `cargo bench -p burrow --bench wasm`.
BENCH_ARGS ?=
bench: setup plugins broker peers
	$(CARGO) build --release -p burrow --bin burrow
	BURROW_BIN=$${CARGO_TARGET_DIR:-$(CURDIR)/target}/release/burrow $(CARGO) run --release -p burrow-e2e --bin bench -- $(BENCH_ARGS)

## peers: install the bench's peer (B14: Quix Streams, pinned in bench/peers/requirements.txt)
## into .python/peers
peers:
	@bash scripts/python.sh $(CURDIR)/.python/peers $(CURDIR)/bench/peers/requirements.txt

## python-unit: the Python SDK's and every Python plugin's unit tests, natively (no wasm)
python-unit:
	cd plugin-sdk/python && python3 -m unittest discover -b -s tests
	@for p in $(PYTHON_PLUGINS); do \
	  echo "python3 -m unittest (plugins/$$p)"; \
	  (cd plugins/$$p && PYTHONPATH=$(CURDIR)/plugin-sdk/python python3 -m unittest -b) || exit 1; \
	done

## plugins: build every plugin in plugins/ into target/plugins/NAME.wasm: Rust ones for
## wasm32-wasip2, Python ones (plugin.py) with componentize-py (rebuilt when their sources change)
plugins: setup $(PYTHON_PLUGIN_FILES)
	$(CARGO) build --profile plugin --target $(PLUGIN_TARGET) $(addprefix -p ,$(RUST_PLUGINS))
	@mkdir -p $(PLUGIN_DIR)
	@for p in $(RUST_PLUGINS); do \
	  cp target/$(PLUGIN_TARGET)/plugin/$${p//-/_}.wasm $(PLUGIN_DIR)/$$p.wasm; \
	  echo "built $(PLUGIN_DIR)/$$p.wasm"; \
	done

.SECONDEXPANSION:
$(PYTHON_PLUGIN_FILES): $(PLUGIN_DIR)/%.wasm: $$(wildcard plugins/%/*.py) $(PYTHON_SDK) | python
	bash plugin-sdk/python/build.sh plugins/$* $@
	@echo "built $@"

## python: install componentize-py, which builds the Python plugins, into .python/ (idempotent,
## offline once installed)
python:
	@bash scripts/python.sh

## setup: install the toolchain target and system packages the build needs (idempotent)
setup:
	@bash scripts/setup.sh

## chaos: the chaos driver's full run (MESSAGES=1000000 by default) through the real binary,
## with faults injected at random; prints the verdict table, fails on any loss
MESSAGES ?= 1000000
chaos: setup plugins broker
	$(CARGO) run -p burrow-e2e --bin chaos -- $(MESSAGES)

## sim: the pool's deterministic simulation over SEEDS seeds from START (release build); prints,
## for each kind of violation, the first seed that found it. The test `replay`
## (BURROW_SIM_START=N) prints one seed's shortest failing schedule. `make test` runs 2,000.
SEEDS ?= 100000
START ?= 0
sim: setup
	BURROW_SIM_SEEDS=$(SEEDS) BURROW_SIM_START=$(START) \
	  $(CARGO) test --release -p burrow-pool --lib sim::tests::survey -- --ignored --nocapture

## broker: install Tansu, the Kafka-protocol broker the end-to-end tests start, into .broker/
## (checksum verified; idempotent, offline once installed)
broker:
	@bash scripts/broker.sh
