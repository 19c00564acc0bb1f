# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint protos bench clean

setup: $(STAMP)

# Re-installs only when the dependencies change.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed (set PYTHON=...)") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/autoimport serve

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# Regenerates the committed stubs in autoimport/v1 (tests/test_protos.py fails when they are stale).
protos: setup
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/autoimport/v1/*.proto

bench: setup
	$(BIN)/python -m bench
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.csv_import
	$(BIN)/python -m bench.connectors

clean:
	rm -rf $(VENV) *.egg-info
