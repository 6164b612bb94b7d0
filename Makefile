# Vigil's two entry points are `make run` and `make test`; everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the test suite starts private instances of, and the browser the console's tests
# drive (Debian's chromium and its chromedriver: no tool downloads a browser of its own).
SYSTEM_PACKAGES := postgresql redis-server prometheus prometheus-alertmanager prometheus-blackbox-exporter age zstd chromium chromium-driver
SYSTEM_BINARIES := redis-server prometheus promtool prometheus-alertmanager amtool prometheus-blackbox-exporter age zstd chromium chromedriver
# What only the benchmarks need: pgBackRest, the anchor of benchmarks/backup.py.
BENCH_PACKAGES := pgbackrest
BENCH_BINARIES := pgbackrest

.PHONY: run test lint format bench mutate lock sysdeps benchdeps clean

# Every Python package any target installs, at the exact version the suite last passed with
# (`make lock` refreshes it). pip installs with it as a constraints file, so a new release of
# any dependency reaches a machine only through a refreshed, tested lock.
LOCK := requirements.lock
# Build tools come from the lock too: no build isolation, which would fetch the newest setuptools.
PIP_INSTALL := $(BIN)/pip install -q --constraint $(LOCK)
PIP_INSTALL_PROJECT := $(PIP_INSTALL) --no-build-isolation
# The extras the lock covers: all of them, so that tests, benchmarks and lint agree on versions.
LOCK_EXTRAS := test,bench,openfeature,mutate

run: $(VENV)/.run-installed
	$(BIN)/vigil run $(if $(CONFIG),--config $(CONFIG))

test: sysdeps $(VENV)/.test-installed
	$(MAKE) lint
	$(BIN)/pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check agent exporters tests benchmarks grafana
	$(BIN)/ruff format --check agent exporters tests benchmarks grafana
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(VENV)/.test-installed
	$(BIN)/ruff check --fix agent exporters tests benchmarks grafana
	$(BIN)/ruff format agent exporters tests benchmarks grafana

bench: sysdeps benchdeps $(VENV)/.test-installed
	$(PIP_INSTALL_PROJECT) -e '.[test,bench]'
	$(BIN)/python benchmarks/probes.py
	$(BIN)/python benchmarks/degradation.py
	$(BIN)/python benchmarks/soak.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/footprint.py
	$(BIN)/python benchmarks/ratelimit.py
	$(BIN)/python benchmarks/backup.py

# Mutation testing of the pure cores (`[tool.mutmut]` in pyproject.toml) against their unit tests,
# then the score per file against the 90 % floor (tests/mutation/score.py). Takes minutes, so it is
# not part of `make test`. Every run starts afresh: mutmut keeps verdicts in mutants/ and would not
# judge a surviving mutant again after a new test. MUTATE_CHILDREN: parallel mutant runs.
MUTATE_CHILDREN ?= 2
mutate: $(VENV)/.test-installed
	$(PIP_INSTALL_PROJECT) -e '.[test,mutate]'
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATE_CHILDREN)
	$(BIN)/python tests/mutation/score.py

# Installs the Debian packages when a binary is missing and we may (root); otherwise says what
# is missing and leaves the decision to the test harness (skip locally, fail under CI=true).
sysdeps:
	@missing=""; \
	for b in $(SYSTEM_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing initdb"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing (run as root to install):$$missing"; \
	  fi; \
	fi

# The same for the benchmarks' own packages.
benchdeps:
	@missing=""; \
	for b in $(BENCH_BINARIES); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_PACKAGES) >/dev/null; \
	  else \
	    echo "missing (run as root to install):$$missing"; \
	  fi; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.tools-installed: $(LOCK) | $(VENV)/bin/python
	$(PIP_INSTALL) pip setuptools wheel
	touch $@

$(VENV)/.run-installed: pyproject.toml $(LOCK) $(VENV)/.tools-installed
	$(PIP_INSTALL_PROJECT) -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(LOCK) $(VENV)/.tools-installed
	$(PIP_INSTALL_PROJECT) -e '.[test]'
	touch $@ $(VENV)/.run-installed

# Resolves every range in pyproject.toml afresh in a scratch environment and writes the newest
# releases inside them to $(LOCK). Run `make test` on the result before committing it.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q --upgrade pip wheel "$$(.lock-venv/bin/python -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"] if r.startswith("setuptools")))')"
	.lock-venv/bin/pip install -q --no-build-isolation -e '.[$(LOCK_EXTRAS)]'
	{ echo "# Generated by 'make lock' from the ranges in pyproject.toml (extras: $(LOCK_EXTRAS))."; \
	  echo "# Python $$(.lock-venv/bin/python -c 'import platform; print(platform.python_version(), platform.machine())'). Do not edit by hand."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | LC_ALL=C sort -f; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .lock-venv
	@echo "wrote $(LOCK); run 'make test' before committing it"

clean:
	rm -rf $(VENV) .lock-venv mutants .vigil .pytest_cache .mypy_cache .ruff_cache
