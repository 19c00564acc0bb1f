# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
# VENV=<path>: use that virtualenv as it is, installing nothing into it (e.g. a second checkout,
# or a test's fresh clone, running with the first one's); by default .venv, created and kept up
# to date here.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-model test-faults lint protos bench clean

ifeq ($(VENV),.venv)
setup: $(STAMP)
else
setup:
	@test -x $(BIN)/python || { echo "VENV=$(VENV) has no bin/python" >&2; exit 1; }
endif

# Re-installs only when the dependencies change.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed (set PYTHON=...)") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The server and the scheduler, and a demo unless AUTOIMPORT_DEMO=0 (service/run.py); this
# checkout's code, whichever virtualenv.
run: setup
	$(BIN)/python -m service.cli run

test: setup
	$(BIN)/python -m pytest -q

# The long search of the sync model (tests/model): EXAMPLES runs of up to STEPS steps for each
# store and position mode (K=sqlite: only those whose name matches), with hypothesis's
# statistics. A failure prints its minimal reproduction, as calls; `make test` runs a small
# derandomized subset.
EXAMPLES ?= 2000
STEPS ?= 60
K ?=
test-model: setup
	AUTOIMPORT_MODEL_EXAMPLES=$(EXAMPLES) AUTOIMPORT_MODEL_STEPS=$(STEPS) \
		$(BIN)/python -m pytest -q --timeout=0 --hypothesis-show-statistics \
		$(if $(K),-k '$(K)') tests/model

# Every fault case of tests/faults on both stores (SIGKILL of the server at 30 seeded points a
# store and of the projector at 10, every source fault of every connector, PostgreSQL
# restarted); `make test` runs a seeded subset. SEED=n for other moments.
SEED ?= 20261202
test-faults: setup
	AUTOIMPORT_FAULTS=all AUTOIMPORT_FAULT_SEED=$(SEED) $(BIN)/python -m pytest -q --timeout=1800 -s tests/faults

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

# Regenerates the committed stubs in autoimport/v1 (tests/test_protos.py fails when they are stale).
protos: setup
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/autoimport/v1/*.proto

# Every benchmark, one table (bench/__main__.py), also written to bench/results/; under 10
# minutes on 2 CPUs. BENCH_ARGS: e.g. --quick, --long, --only csv sync.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .venv *.egg-info
