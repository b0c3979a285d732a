# The README's two commands: `make demo` and `make test`. Each creates (or reuses) a Python 3.12
# virtual environment in .venv and installs the project into it first. Only `make test` needs
# Node.js: its two npm test tools (iam-simulate, asl-validator) are installed by $(TEST_TOOLS) alone.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov (tests/integration/test_checkov.py) pins boto3 1.35 and more that clash with the project's
# pins: it gets a virtual environment of its own, inside .venv.
CHECKOV_VERSION := 3.3.30
CHECKOV := $(VENV)/checkov/bin/checkov
# all-MiniLM-L6-v2 is exported with PyTorch, whose CPU wheel here is for Python 3.11 only (PyPI's
# cp312 torch is a CUDA build that does not resolve): the export gets a Python 3.11 environment of
# its own (training/transformers/requirements.txt), run as a subprocess; nothing served imports it.
EXPORT_VENV := $(VENV)/export
EXPORT_STAMP := $(EXPORT_VENV)/.installed
PYTHON311 ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.11*/bin/python3.11 python3.11; do \
	  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
# tests/integration/test_registry_iam.py evaluates the registry policies with an IAM simulator (npm).
IAM_SIMULATE_VERSION := 0.1.173
IAM_SIMULATE := $(VENV)/node/node_modules/@cloud-copilot/iam-simulate/package.json
# The Amazon States Language validator (npm) checks each batch-job state machine
# (tests/integration/test_state_machine.py); it lives in .venv/asl, pinned here.
ASL_VALIDATOR_VERSION := 4.0.0
ASL_VALIDATOR := $(VENV)/asl/node_modules/.bin/asl-validator
TEST_TOOLS := $(VENV)/.test-tools
# make bench's own environment (benchmarks/requirements.txt): llama-cpp-python, compiled once into a
# wheel kept outside the repository, so only the first bench on a machine pays the ~12 min build.
BENCH_VENV := $(VENV)/bench
BENCH_STAMP := $(BENCH_VENV)/.installed
WHEELS := $(HOME)/.cache/maas/wheels
LLAMA_CPP_VERSION := 0.3.36
# Lambda's runtime is python3.12: find a working interpreter (pyenv's build, else python3.12 on PATH).
PYTHON312 ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 python3.12; do \
	  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
# The venv's bin first: sam build finds python3.12 there, and `maas`/`sam` resolve to the pinned ones.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: demo test bench lint install clean docs

$(EXPORT_STAMP): training/transformers/requirements.txt
	@test -n "$(PYTHON311)" || { echo "error: no Python 3.11 interpreter found for the PyTorch export (set PYTHON311=...)"; exit 1; }
	@test -x $(EXPORT_VENV)/bin/python || $(PYTHON311) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/pip install --quiet -r training/transformers/requirements.txt
	@touch $(EXPORT_STAMP)

$(STAMP): pyproject.toml Makefile $(EXPORT_STAMP)
	@test -n "$(PYTHON312)" || { echo "error: no Python 3.12 interpreter found (install it, or set PYTHON312=/path/to/python3.12)"; exit 1; }
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[training,dev]"
	@$(CHECKOV) --version 2>/dev/null | grep -qx "$(CHECKOV_VERSION)" || { $(PYTHON312) -m venv $(VENV)/checkov && \
	  $(VENV)/checkov/bin/pip install --quiet "checkov==$(CHECKOV_VERSION)"; }
	@touch $(STAMP)

# The npm test tools: `make test` only (`make demo` needs Python alone).
$(TEST_TOOLS): Makefile | $(STAMP)
	@grep -q '"version": "$(IAM_SIMULATE_VERSION)"' $(IAM_SIMULATE) 2>/dev/null || { \
	  command -v npm >/dev/null || { echo "error: npm is needed for iam-simulate (install Node.js)"; exit 1; }; \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/node "@cloud-copilot/iam-simulate@$(IAM_SIMULATE_VERSION)"; }
	@$(ASL_VALIDATOR) --version 2>/dev/null | grep -qx "$(ASL_VALIDATOR_VERSION)" || { \
	  command -v npm >/dev/null || { echo "error: npm is needed for asl-validator (install Node.js)"; exit 1; }; \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/asl "asl-validator@$(ASL_VALIDATOR_VERSION)"; }
	@touch $(TEST_TOOLS)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/maas demo

test: $(STAMP) $(TEST_TOOLS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/runtime/maas
	$(PY) -m pytest -p random_order --random-order-bucket=module

$(BENCH_STAMP): benchmarks/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON312) -m venv $(BENCH_VENV)
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || { mkdir -p $(WHEELS) && \
	  CMAKE_ARGS="-DGGML_NATIVE=ON" $(BENCH_VENV)/bin/pip wheel --no-deps "llama-cpp-python==$(LLAMA_CPP_VERSION)" -w $(WHEELS); }
	$(BENCH_VENV)/bin/pip install --quiet --find-links $(WHEELS) -r benchmarks/requirements.txt
	@touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	$(PY) -m benchmarks.run

# The documentation site (mkdocs.yml, docs/), served with live reload on http://127.0.0.1:8000.
# The tests build it with --strict; the Material theme's banner about MkDocs 2.0 is turned off.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf .aws-sam build site .pytest_cache .ruff_cache
