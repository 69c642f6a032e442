# Two entry points that work on a fresh machine:
#   make train  - set up .venv if needed, then train the default agent on CartPole-v1 (writes runs/...)
#   make test   - set up .venv with the dev extras if needed, then check the formatting, lint,
#                 type-check, build the docs and run the tests (`make format` formats)
# Installs go through constraints.txt, which pins the versions the tests ran with. Where pip would
# take PyTorch's CUDA build (a plain PyPI machine), pass PyTorch's CPU wheel index:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -c constraints.txt
TORCH_INDEX ?=

.PHONY: train test format lint typecheck docs bench bench-zoo peer-venvs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# PyTorch first, from TORCH_INDEX when given (the CPU build), so that the installs below find it.
$(VENV)/.installed-torch: constraints.txt | $(BIN)/python
	$(PIP) torch $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	touch $@

$(VENV)/.installed-base: pyproject.toml constraints.txt $(VENV)/.installed-torch
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt $(VENV)/.installed-torch
	$(PIP) -e '.[dev]'
	touch $@

$(VENV)/.installed-docs: pyproject.toml constraints.txt $(VENV)/.installed-torch
	$(PIP) -e '.[docs]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml constraints.txt $(VENV)/.installed-torch
	$(PIP) -e '.[bench]'
	touch $@

train: $(VENV)/.installed-base
	$(BIN)/a3c train CartPole-v1

format: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests benchmarks tools

lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/ruff check src tests benchmarks tools

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The docs extra only: the API pages read the sources, not the installed extras.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: $(VENV)/.installed-dev lint typecheck docs
	$(BIN)/python -m pytest -q --durations=20

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
