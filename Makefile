# modelwatch: `make demo` runs the whole thing locally; `make test` runs the test suite.
# Both create .venv and install the locked dependencies on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
PIP_VERSION := 26.3
SIZE ?= full

.PHONY: install system-deps demo test test-fast bench lint lock clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing locked dependencies into $(VENV) (first run takes a few minutes)"
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check "pip==$(PIP_VERSION)"
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.lock
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@$(PY) -m modelwatch.embeddings export  # the int8 ONNX embedding model, once per bundled model hash (no download)
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

# Debian packages the tests use: Prometheus, the Pushgateway and promtool (metrics and alert rules),
# Chromium and ChromeDriver (the report pages are checked in a headless browser).
SYSTEM_PACKAGES := prometheus prometheus-pushgateway chromium chromium-driver
system-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v prometheus-pushgateway >/dev/null && \
	 command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	{ echo "installing Debian packages $(SYSTEM_PACKAGES)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES) >/dev/null; }; }

demo: install
	$(PY) scripts/demo.py

test: install system-deps
	$(PY) -m pytest

test-fast: install system-deps
	$(PY) -m pytest -m "not scheduler"

# Benchmark suites (bench/suite_*.py): `make bench` at full size, `make bench SIZE=small` for a quick pass.
bench: install
	$(PY) bench/run.py --size $(SIZE)

lint: install
	$(VENV)/bin/ruff check include dags plugins tests scripts bench examples
	$(VENV)/bin/lint-imports

# Re-resolve the pinned direct dependencies and rewrite the lock file.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet "pip==$(PIP_VERSION)" && .lockenv/bin/pip install --quiet -e '.[pipeline,serving,dev]'
	.lockenv/bin/pip freeze --exclude-editable > requirements.lock && rm -rf .lockenv

clean:
	rm -rf .demo demo_output .pytest_cache
