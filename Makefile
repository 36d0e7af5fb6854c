# Huizhen: `make serve` (install + start on the embedded default) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

serve: $(VENV)/.installed
	$(BIN)/huizhen serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check huizhen tests bench migrations
	$(BIN)/mypy huizhen

test: lint
	$(BIN)/python -m pytest --cov=huizhen --cov-report=term:skip-covered --durations=30

schema: $(VENV)/.installed
	$(BIN)/huizhen schema > schema.graphql

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
