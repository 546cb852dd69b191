# Toolchain entry points. Everything runs from the project's own .venv/ and node_modules/:
#   .venv/bin first on PATH (python, ape, pytest, slither, plus links to anvil, forge and the solc shim)
#   SOLCX_BINARY_PATH=.venv/solcx (py-solc-x / ape-solidity find `solc-v0.8.28` there: scripts/solc-shim.js)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
SOLC_VERSION := 0.8.28
SOLCX_DIR := $(VENV)/solcx

export PATH := $(BIN):$(PATH)
export SOLCX_BINARY_PATH := $(SOLCX_DIR)
export VIRTUAL_ENV := $(VENV)

PYTHON := $(BIN)/python
PIP := $(PYTHON) -m pip --disable-pip-version-check

# npm platform package that carries the real anvil/forge binaries
NPM_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,amd64)
FOUNDRY_BIN = $(ROOT)/node_modules/@foundry-rs/$(1)-linux-$(NPM_ARCH)/bin/$(1)

# Stamps keyed on the content of the lock files (and on which of keeper/ sim/ exist, because the
# editable install maps only the packages present when it ran): a warm `make setup` does no installs.
PY_KEY := $(shell cat requirements.lock requirements-nodeps.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)$(shell for d in keeper sim; do [ -d $$d ] && printf -- "-%s" $$d; done; true)
NODE_KEY := $(shell cat package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
PY_STAMP := $(VENV)/.stamp-py-$(PY_KEY)
# ape's incremental compile can miss edited sources (seen: a changed periphery contract kept its old
# artifact); a content hash of every contract forces a full `ape compile --force` whenever one changes.
SOL_KEY := $(shell find contracts -name '*.sol' -not -path 'contracts/.cache/*' 2>/dev/null | sort | xargs cat 2>/dev/null | sha256sum | cut -c1-16)
SOL_STAMP := $(ROOT)/.build/.stamp-sol-$(SOL_KEY)
NODE_STAMP := $(ROOT)/node_modules/.stamp-node-$(NODE_KEY)

SLITHER_FILTER := node_modules/|contracts/mocks/|contracts/\.cache/|tests/|test/

.PHONY: help setup compile test test-forge test-py demo gas gas-check abi bench backtest lint slither clean distclean

help:
	@echo "make setup    create .venv (requirements.lock + editable project), npm ci, link solc shim/anvil/forge"
	@echo "make compile  ape compile"
	@echo "make test     forge test (tests/forge, if any) then pytest (PYTEST_ARGS=... to pass options)"
	@echo "make demo     the demo scenario on a local chain it starts and stops (-> reports/demo/report.md)"
	@echo "make gas      forge: gas of every operation over the grid (-> reports/gas.json) and .gas-snapshot"
	@echo "make gas-check forge snapshot --check: fails when a gas test moved more than GAS_TOLERANCE % (default 1)"
	@echo "make abi      ABIs, custom errors and events of the contracts for integrators (-> abi/)"
	@echo "make bench    engine, keeper and simulator benchmarks (-> reports/bench/*.json)"
	@echo "make backtest margin backtest on real BTC/ETH(/LTC) history (-> reports/backtest/)"
	@echo "make lint     ruff check + mypy keeper sim"
	@echo "make slither  slither over contracts/ (via forge + solc shim); fails on medium/high findings"

# ------------------------------------------------------------------------------------------- setup
setup: $(PY_STAMP) $(NODE_STAMP)
	@chmod +x $(ROOT)/scripts/solc-shim.js $(call FOUNDRY_BIN,anvil) $(call FOUNDRY_BIN,forge)
	@mkdir -p $(SOLCX_DIR)
	@ln -sfn $(ROOT)/scripts/solc-shim.js $(SOLCX_DIR)/solc-v$(SOLC_VERSION)
	@ln -sfn $(ROOT)/scripts/solc-shim.js $(BIN)/solc
	@ln -sfn $(call FOUNDRY_BIN,anvil) $(BIN)/anvil
	@ln -sfn $(call FOUNDRY_BIN,forge) $(BIN)/forge

$(PY_STAMP):
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) install -q --no-compile -r requirements.lock
	$(PIP) install -q --no-compile --no-deps -r requirements-nodeps.lock
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@# any python started from this venv (ape, pytest, keeper, scripts) finds the solc shim, even without make
	@echo "import os; os.environ.setdefault('SOLCX_BINARY_PATH', '$(SOLCX_DIR)')" \
	  > "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_solcx_binary_path.pth"
	@rm -f $(VENV)/.stamp-py-*
	@touch $@

# --ignore-scripts: the foundry packages' postinstall would try to download; the binaries already
# come in the platform packages (@foundry-rs/{anvil,forge}-linux-<arch>).
$(NODE_STAMP):
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# ------------------------------------------------------------------------------------------- build/test
compile: setup $(SOL_STAMP)

$(SOL_STAMP): | $(PY_STAMP) $(NODE_STAMP)
	ape compile --force
	@rm -f $(ROOT)/.build/.stamp-sol-*
	@touch $@

test: setup test-forge test-py

test-forge: setup
	@if [ -n "$$(find tests/forge -name '*.sol' 2>/dev/null | head -n1)" ]; then \
	  forge test; \
	else echo "make test: no Solidity tests under tests/forge, skipping forge"; fi

# pytest exit code 5 = "no tests collected": not a failure while the suite is being written.
test-py: compile
	@rc=0; pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests"; exit 0; fi; exit $$rc

demo: compile
	python -m sim run scenarios/demo.yaml --out reports/demo

# forge: tests/forge/Gas.t.sol. GasReportTest (the grid) runs with --isolate, every call a transaction of its
# own (scripts/forge_gas.py collects its figures); GasSnapshot*Test (one operation per test at 8 assets / 16
# scenarios) is what .gas-snapshot records and gas-check compares.
GAS_SNAPSHOT_ARGS := --match-path tests/forge/Gas.t.sol --match-contract '^GasSnapshot'
GAS_TOLERANCE ?= 1

gas: setup
	@mkdir -p reports
	python scripts/forge_gas.py
	forge snapshot $(GAS_SNAPSHOT_ARGS)

# GAS_TOLERANCE=0: exact (forge's --tolerance 0 flags equal figures too)
gas-check: setup
	forge snapshot $(GAS_SNAPSHOT_ARGS) --check $(if $(filter-out 0,$(GAS_TOLERANCE)),--tolerance $(GAS_TOLERANCE))

abi: compile
	python scripts/export_abi.py

bench: compile
	@mkdir -p reports/bench
	python scripts/bench_engine.py
	python scripts/bench_keeper.py
	python scripts/bench_sim.py

# --targets exits 1 when a coverage/capital/stability target is missed: print it, keep both reports
backtest: setup
	@mkdir -p reports/backtest
	python -m keeper.backtest --real --targets --json reports/backtest/btc_eth.json --plots reports/backtest/btc_eth || true
	python -m keeper.backtest --real --assets BTC,ETH,LTC --targets --json reports/backtest/btc_eth_ltc.json --plots reports/backtest/btc_eth_ltc || true

lint: setup
	ruff check .
	@dirs="$$(for d in keeper sim; do [ -d $$d ] && printf '%s ' $$d; done; true)"; \
	if [ -n "$$dirs" ]; then echo "mypy $$dirs"; mypy $$dirs; else echo "make lint: no keeper/ or sim/ yet, skipping mypy"; fi

# slither.config.json excludes one detector, incorrect-equality: every strict equality it flags is on a
# bitmask, an exact fraction (f == WAD), a zero check or a snapshot comparison, never on a balance that a
# donation could nudge. Findings that remain are fixed or carry an inline slither-disable with its reason.
# slither drives `forge build --build-info` (foundry.toml: solc shim, OZ remapping, skips contracts/.cache),
# skipping tests/forge; findings in mocks, tests and dependencies are filtered out.
slither: setup
	@if [ -z "$$(find contracts -name '*.sol' -not -path 'contracts/.cache/*' 2>/dev/null | head -n1)" ]; then \
	  echo "make slither: no contracts yet, skipping"; exit 0; fi; \
	slither . --filter-paths '$(SLITHER_FILTER)' --exclude-dependencies \
	  --exclude-informational --exclude-optimization --fail-medium

clean:
	rm -rf .build .forge-out .forge-cache cache contracts/.cache reports/* .pytest_cache .mypy_cache .ruff_cache

distclean: clean
	rm -rf .venv node_modules
