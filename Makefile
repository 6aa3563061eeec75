# GridWatch: `make demo` runs the whole chain on embedded defaults; `make test` runs the suite.
# Both create or refresh the local virtual environment by themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv peers bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

peers:
	@bash scripts/install-peers.sh

demo: $(STAMP)
	@bash scripts/install-peers.sh mosquitto
	$(BIN)/gridwatch demo

test: $(STAMP) peers
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core collector storage

clean:
	rm -rf var .pytest_cache
