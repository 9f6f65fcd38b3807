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
# pure-Python path (MAMORI_UDP_BATCH=0) the tests whose subject is how a query
# datagram comes in and its answer goes out: the resolver's own tests, and the
# integration tests of the resolver and policy service, workers and their
# watchdog, zone transfer (SOA, NOTIFY over UDP), RRL, client groups, wildcard
# listen addresses, the DNSBL (and rbldnsd beside it), Unbound and BIND as peers,
# metrics and client MACs (EDNS). The others (upstreams, feeds, passive DNS,
# console, crash tests ...) use the listener the same way on both paths: the
# query handler is the same. Then the fuzz targets, bounded: the native helper's
# and each parser's (atheris, FUZZ_PY_SECONDS each). All of it stays under 20
# minutes on 2 cores; `make fuzz` runs them for longer.
# The tests mostly wait on real servers: PYTEST_JOBS processes (pytest-xdist; each
# test module stays in one process, so its servers start once) run them side by side.
PYTEST_JOBS ?= 2
PYTEST := $(VENV)/bin/pytest -n $(PYTEST_JOBS) --dist loadscope
UDP_TESTS := tests/resolver $(addprefix tests/integration/test_,$(addsuffix .py, \
	resolver_service rpz_service workers worker_watchdog xfr_primary xfr_secondary \
	feeds_publish rrl groups wildcard_listen dnsbl dnsbl_rbldnsd rpz_unbound_interop \
	feeds_qtype_bind metrics dnsmasq_add_mac))
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
