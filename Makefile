# Two entry points that work on a fresh machine:
#   make train  - set up .venv if needed, then train the default agent on CartPole-v1 (writes runs/...)
#   make test   - set up .venv with the dev extras if needed, then lint, type-check, build the docs
#                 and run the tests
# Installs go through constraints.txt, which pins the CPU build of torch.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -c constraints.txt

.PHONY: train test lint typecheck docs bench bench-zoo peer-venvs clean

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

# rl-baselines3-zoo, for its hyperparams/a2c.yml only (benchmarks/suite.py): without its dependencies
# (optuna, huggingface_sb3, ...), which reading the YAML does not need. Without this, suite.py
# downloads the same wheel into benchmarks/.zoo/ and reads the YAML from it.
bench-zoo: $(VENV)/.installed-bench
	$(BIN)/python -m pip install --no-deps rl_zoo3==2.9.2

# The throughput peers of benchmarks/throughput_peers.py, each in a venv of its own (VENVS=/work/venvs).
peer-venvs:
	tools/peer_venvs.sh sf
	tools/peer_venvs.sh envpool

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache site dist
