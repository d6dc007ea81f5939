# DeepZoo: `make run` serves the API and one worker on the embedded default;
# `make test` runs the whole suite but the tests that train to quality, which
# `make test-slow` runs. All create .venv when it is missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test test-slow test-fast lint format typecheck bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: anything else would pull a multi-GB CUDA build
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	# torchgan's functional losses, for tests comparing the GAN losses; --no-deps: it
	# requires torchvision, which the tests avoid (they load losses/functional.py alone)
	$(BIN)/pip install --quiet --no-deps torchgan==0.1.0
	touch $@

run: $(STAMP)
	$(BIN)/python -m app.devserver

# the whole suite: lint and types, then unit, API (SQLite and PostgreSQL) and end-to-end
test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow" --durations=20

# the tests that train to quality (@pytest.mark.slow): CI runs them after `make test`
test-slow: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m slow --durations=10

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not e2e"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# benchmarks print side-by-side ratios; docs/benchmarks.md records the figures
bench: $(DEV_STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.service_overhead --repeats 5
	$(BIN)/python -m bench.queue_latency
	$(BIN)/python -m bench.predict_latency
	$(BIN)/python -m bench.flows
	$(BIN)/python -m bench.vae
	$(BIN)/python -m bench.uci_boston
	$(BIN)/python -m bench.likelihoods --timing
	$(BIN)/python -m bench.rl
	$(BIN)/python -m bench.rbm

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
