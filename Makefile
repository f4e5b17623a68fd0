# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
# The demo installs what it needs (the `hls` extra: the generator and the C simulation's ap_types);
# the tests install the `dev` extra (transformers + torch as the oracle, Keras/TensorFlow, pytest, ruff).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HLS_STAMP := $(VENV)/.installed-hls
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(HLS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[hls]'
	@touch $(HLS_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(DEV_STAMP) $(HLS_STAMP)

venv: $(DEV_STAMP)

demo: $(HLS_STAMP)
	$(BIN)/python scripts/demo.py csim

test: $(DEV_STAMP)
	$(BIN)/ruff check .
	TORCHDYNAMO_DISABLE=1 $(BIN)/python -m pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
