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

# A local authoritative upstream (Debian's knotd) for trying mamori offline
# (README, Offline): demo.test on 127.0.0.1:$(DEMO_PORT), in the foreground.
DEMO_PORT ?= 5300
DEMO_DIR  ?= /tmp/mamori-demo-knot
demo-upstream:
	mkdir -p $(DEMO_DIR)
	sed -e 's|@DIR@|$(CURDIR)/examples/offline|' -e 's|@RUN@|$(DEMO_DIR)|' \
	    -e 's|@PORT@|$(DEMO_PORT)|' examples/offline/knot.conf.in > $(DEMO_DIR)/knot.conf
	knotd -c $(DEMO_DIR)/knot.conf

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
