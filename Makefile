# Two commands: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck clean bench

$(BIN)/python:
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 11))" || { echo "need Python 3.11 or newer (make PYTHON=/path/to/python3.11)"; exit 3; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

demo: $(STAMP)
	$(BIN)/releasegate demo

# Lint and types first (seconds), then the tests on 3 workers (they mostly wait on loopback
# services, so 3 workers on 2 cores take ~4 minutes instead of ~9); pytest's summary stays the last line.
test: $(STAMP)
	$(BIN)/ruff check src tests checks loadtests
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 3

lint: $(STAMP)
	$(BIN)/ruff check src tests checks loadtests
	$(BIN)/ruff format --check src tests checks loadtests

typecheck: $(STAMP)
	$(BIN)/mypy

# Benchmarks (minutes, not seconds: testssl.sh is slow); writes bench/RESULTS.md. See bench/README.md.
# security_stage.py rewrites the whole file, the others then add their own sections: keep this order.
bench: $(STAMP)
	$(BIN)/python bench/security_stage.py
	$(BIN)/python bench/slo_latency.py
	$(BIN)/python bench/load_generator.py
	$(BIN)/python bench/restore_drill.py
	$(BIN)/python bench/canary_judge.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
