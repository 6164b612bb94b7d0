# Vigil's two entry points are `make run` and `make test`; everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the test suite starts private instances of (and the benchmark's anchor).
SYSTEM_PACKAGES := postgresql redis-server prometheus prometheus-alertmanager prometheus-blackbox-exporter
SYSTEM_BINARIES := redis-server prometheus promtool prometheus-alertmanager amtool prometheus-blackbox-exporter

.PHONY: run test lint format bench sysdeps clean

run: $(VENV)/.run-installed
	$(BIN)/vigil run $(if $(CONFIG),--config $(CONFIG))

test: sysdeps $(VENV)/.test-installed
	$(MAKE) lint
	$(BIN)/pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check agent exporters tests benchmarks grafana
	$(BIN)/ruff format --check agent exporters tests benchmarks grafana
	$(BIN)/mypy

format: $(VENV)/.test-installed
	$(BIN)/ruff check --fix agent exporters tests benchmarks grafana
	$(BIN)/ruff format agent exporters tests benchmarks grafana

bench: sysdeps $(VENV)/.test-installed
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python benchmarks/probes.py
	$(BIN)/python benchmarks/degradation.py
	$(BIN)/python benchmarks/pipeline.py

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

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-installed

clean:
	rm -rf $(VENV) .vigil .pytest_cache .mypy_cache .ruff_cache
