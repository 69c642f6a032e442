# Two entry points that work on a fresh machine:
#   make train  - set up .venv if needed, then train the default agent on CartPole-v1 (writes runs/...)
#   make test   - set up .venv with the dev extras if needed, then lint, type-check, build the docs
#                 and run the tests
# Installs go through constraints.txt, which pins the CPU build of torch.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -c constraints.txt

.PHONY: train test lint typecheck docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) -e '.[bench]'
	touch $@

train: $(VENV)/.installed-base
	$(BIN)/a3c train CartPole-v1

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks tools

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: $(VENV)/.installed-dev lint typecheck docs
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/cartpole_sb3.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache site dist
