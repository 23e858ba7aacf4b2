# Set-up and everyday commands. Each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is pinned first so the `torch` extra's range is already satisfied by a CPU build.
TORCH  ?= torch==2.13.0
# Test processes (pytest-xdist): one per core; each test module stays in one process.
TEST_JOBS ?= auto

.PHONY: demo test check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[torch]"
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.core
	$(BIN)/pip install --quiet -e ".[torch,tensorflow-cpu,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

## demo: install, then train and evaluate the MLP on digits with the built-in defaults
demo: $(VENV)/.core
	$(BIN)/luigi --module pipelines Evaluate --data-config configs/data/digits.yaml \
		--model-config configs/model/mlp_torch.yaml --local-scheduler
	$(BIN)/python -c "import glob, json; [print(p, json.load(open(p))['metrics']) for p in sorted(glob.glob('results/*/*/*/eval/*/metrics.json'))]"

## test: install everything (torch, TensorFlow, dev tools), then run the test suite
test: $(VENV)/.dev
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=15

## check: lint and type-check
check: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: the benchmark suite (ratios side by side)
bench: $(VENV)/.dev
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) results
