# One command to test on a fresh machine: `make test`. The main job: `make bench`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dsedge-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: test test-fast bench install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[train,dev,openvino]'
	@touch $(STAMP)

test: $(STAMP)  ## the whole suite, slow real-data tests included (they skip without data)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## skip the slow real-data tests
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)  ## the default benchmark: every backend here vs PyTorch eager (e.g. BENCH_ARGS='--out run1')
	$(BIN)/dsedge bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check dsedge tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
