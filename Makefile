# phi3-lora-hub developer commands. `make quickstart` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of PyTorch keeps installs small where there is no GPU; override for CUDA, e.g. TORCH_SPEC=torch.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: venv install install-test quickstart test test-fast test-slow lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e .

install-test: venv
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,space,loralib]"

quickstart: install
	$(BIN)/phi3-lora-hub quickstart

# The whole suite: fast tests first, then the slow end-to-end cases; exit code 5 (no tests) is a failure.
test: install-test lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

test-fast: install-test
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache quickstart-output
