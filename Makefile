# Two entry points: `make run` (demo firewall) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= examples/mamori.toml

.PHONY: run test venv test-deps lint bench clean demo-upstream

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

venv: $(STAMP)

run: venv
	$(VENV)/bin/mamori serve --config $(CONFIG)

# A local authoritative upstream (Debian's knotd) for trying mamori offline.
demo-upstream:
	sed 's|@DIR@|$(CURDIR)/examples/offline|' examples/offline/knot.conf.in > /tmp/mamori-demo-knot.conf
	mkdir -p /tmp/mamori-demo-knot
	knotd -c /tmp/mamori-demo-knot.conf

test-deps:
	./scripts/install-test-deps.sh

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: venv test-deps lint
	$(VENV)/bin/pytest

bench: venv test-deps
	$(PY) bench/dnsperf

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
