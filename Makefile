# Two commands set everything up on a fresh machine:
#   make demo   - virtualenv + pinned CPU PyTorch + scai, then `scai demo` on the embedded dataset
#   make test   - the same environment plus test extras, then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch. Installing it first means `torch>=2.2` in pyproject is already
# satisfied, so pip never pulls the multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test bench venv clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.core: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install --quiet $(TORCH_PIN) -e ".[dev]"
	touch $@

venv: $(VENV)/.core

demo: $(VENV)/.core
	$(BIN)/scai demo --out scai-demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) scai-demo
