# Two entry points: `make run` (demo firewall) and `make test` (whole suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= examples/mamori.toml

.PHONY: run test venv test-deps lint bench clean demo-upstream fuzz fuzz-native audit

$(STAMP): pyproject.toml constraints.txt setup.py $(wildcard src/mamori/resolver/udpbatch*.[ch])
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

# The whole suite with the native batched UDP helper, then again with the
# pure-Python path (MAMORI_UDP_BATCH=0) every test that sends DNS over UDP to a
# listener (the resolver's and the integration tests; not the browser ones, the
# settings and rules APIs', the crash tests', the encrypted upstreams', the
# ClickHouse query log's and fleet's, the passive DNS API's, the stats audit's nor
# the Unbound RPZ replay's: what they test does not change with the UDP path, and
# the query handler is the same on both); then the fuzz targets, bounded:
# the native helper's and each parser's (atheris, FUZZ_PY_SECONDS each). All
# of it stays under 20 minutes on 2 cores; `make fuzz` runs them for longer.
# The tests mostly wait on real servers: PYTEST_JOBS processes (pytest-xdist; each
# test module stays in one process, so its servers start once) run them side by side.
PYTEST_JOBS ?= 2
PYTEST := $(VENV)/bin/pytest -n $(PYTEST_JOBS) --dist loadscope
UDP_TESTS := tests/resolver tests/integration \
	--ignore=tests/integration/test_console_browser.py \
	--ignore=tests/integration/test_settings_browser.py \
	--ignore=tests/integration/test_settings_api.py \
	--ignore=tests/integration/test_crash_serve.py \
	--ignore=tests/integration/test_crash_children.py \
	--ignore=tests/integration/test_crash_pdns_ingest.py \
	--ignore=tests/integration/test_rules_api.py \
	--ignore=tests/integration/test_upstream_tls.py \
	--ignore=tests/integration/test_brand_browser.py \
	--ignore=tests/integration/test_fleet.py \
	--ignore=tests/integration/test_querylog_clickhouse_crash.py \
	--ignore=tests/integration/test_querylog_clickhouse_fleet.py \
	--ignore=tests/integration/test_querylog_clickhouse_refused.py \
	--ignore=tests/integration/test_pdns_api.py \
	--ignore=tests/integration/test_stats_audit.py \
	--ignore=tests/integration/test_rpz_replay.py
test: venv test-deps lint
	$(PYTEST)
	MAMORI_UDP_BATCH=0 $(PYTEST) -q $(UDP_TESTS)
	scripts/fuzz-native.sh $(FUZZ_SECONDS)
	scripts/fuzz-python.sh $(FUZZ_PY_SECONDS)
	VENV=$(VENV) scripts/audit-deps.sh

# pip-audit over constraints.txt: fails on a known vulnerability; says "audit service
# unreachable" (and does not fail) when PyPI's vulnerability data cannot be reached.
audit: venv
	VENV=$(VENV) scripts/audit-deps.sh

FUZZ_SECONDS ?= 30
FUZZ_PY_SECONDS ?= 5
FUZZ_MINUTES ?= 10

# Every fuzz target for FUZZ_MINUTES each: `make fuzz FUZZ_MINUTES=60`.
fuzz: venv test-deps
	scripts/fuzz-native.sh $$(( $(FUZZ_MINUTES) * 60 ))
	scripts/fuzz-python.sh $$(( $(FUZZ_MINUTES) * 60 ))

# libFuzzer + ASan/UBSan over the native UDP helper; `make fuzz-native FUZZ_SECONDS=600`.
fuzz-native: test-deps
	scripts/fuzz-native.sh $(FUZZ_SECONDS)

bench: venv test-deps
	$(PY) bench/dnsperf

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
