# Two commands: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck clean bench report

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

# Every benchmark (about 25 minutes on 2 cores: testssl.sh is slow) into a fresh bench/RESULTS.md, replaced only when all of them
# succeeded; stops first, saying so, if a peer is missing (make bench-deps). See bench/README.md.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The peers and real components the benchmarks measure (testssl.sh, wrk, strace, postgresql): apt-get, as root.
.PHONY: bench-deps
bench-deps: $(STAMP)
	$(BIN)/python bench/run_all.py --install-deps

# Allure 3 (npm, pinned in package-lock.json) for `make report`; .ci/run builds this once.
NODE_STAMP := node_modules/.package-lock.json
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $(NODE_STAMP)

# A browsable HTML report of one gate run: RESULTS=path/to/allure-results, by default the newest
# under reports/ (a run's reports/<stage>-<time>/ or a demo's reports/demo-<time>/<stage>/).
# Written beside it as allure-report/index.html: one file, opens without a web server. Allure's
# page loads Google Analytics (the awesome plugin ignores ALLURE_NO_ANALYTICS): the two <script>
# elements are cut out, and the target fails if a newer Allure brings them back another way.
RESULTS ?= $(shell ls -td reports/*/allure-results reports/*/*/allure-results 2>/dev/null | head -n 1)
report: $(NODE_STAMP)
	@test -d "$(RESULTS)" || { echo "no Allure results: run a gate first (make demo), or pass RESULTS=path/to/allure-results"; exit 3; }
	@out="$$(dirname "$(RESULTS)")/allure-report" && rm -rf "$$out" \
	    && ALLURE_NO_ANALYTICS=true node node_modules/allure/cli.js generate --config allurerc.yaml --output "$$out" "$(RESULTS)" >/dev/null \
	    && sed -i '/googletagmanager\.com/,/<\/script>/d' "$$out/index.html" \
	    && if grep -q 'googletagmanager\|gtag(' "$$out/index.html"; then echo "$$out/index.html still loads analytics"; exit 1; fi \
	    && echo "report: $$out/index.html"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache node_modules
