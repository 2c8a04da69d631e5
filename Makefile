# streamserve's one task runner. `make run` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/server.yaml
# Two stamps: what serving needs (`make run`), and that plus the development extras (tests, lint,
# grpcurl, benchmarks' clients). `make run` never waits for the second.
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed
PLUGINS   := -e plugins/anomaly -e plugins/oip -e plugins/tfserving

.PHONY: run dev test lint protos protos-check bench bench-quick bench-peer clean help

help:
	@echo "make run     set up .venv (serving only) and serve $(CONFIG) (STREAMSERVE_ADDRESS=HOST:PORT to move it)"
	@echo "make dev     add the development extras to .venv (pytest, ruff, mypy, grpcurl, ...)"
	@echo "make test    set up .venv with the development extras and run every test"
	@echo "make lint    ruff and mypy"
	@echo "make protos  regenerate Python code from protos/*.proto"
	@echo "make bench   the benchmark harness: echo, naive, streamserve (docs/performance.md; ~11 min)"
	@echo "make bench-peer  streamserve vs MLServer (and the echo ceiling) on a user's SavedModel (own venv .venv-peer; ~7 min)"
	@echo "make nab     score the anomaly detector on ../shared/data/nab over gRPC (docs/anomaly.md)"

# The virtualenv is brought up to date when a dependency list changes.
$(RUN_STAMP): pyproject.toml plugins/anomaly/pyproject.toml plugins/oip/pyproject.toml plugins/tfserving/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "streamserve needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . $(PLUGINS)
	@touch $@

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(PLUGINS)
	@touch $@

dev: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/streamserve serve --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

protos: $(STAMP)
	$(BIN)/python protos/generate.py

protos-check: $(STAMP)
	$(BIN)/python protos/generate.py --check

# Benchmarks (docs/performance.md): echo, naive and streamserve, every scenario, medians of 3 repeats,
# ~10 minutes. Results in benchmarks/results/. BENCH_ARGS="--duration 20 --scenarios chunked" etc.
BENCH_ARGS ?= --repeat 3
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# The same in ~1 minute, tiny: a smoke test of the harness, not a measurement.
bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

# streamserve against Seldon MLServer (docs/performance.md): MLServer lives in its own virtualenv (it
# pins what ours cannot share), with the TensorFlow of ours. PEER_ARGS="--rounds 3 --duration 20" etc.
PEER_VENV ?= .venv-peer
MLSERVER_VERSION ?= 1.7.1
PEER_ARGS ?= --rounds 2
# uvloop < 0.22: MLServer 1.7.1's inference workers (--mlserver-workers N) call
# asyncio.get_event_loop() in a fresh process, which uvloop 0.22 made an error.
$(PEER_VENV)/.installed: $(STAMP) Makefile
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEER_VENV)/bin/python -m pip install --quiet mlserver==$(MLSERVER_VERSION) 'uvloop<0.22' \
		tensorflow==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("tensorflow"))')
	@touch $@

bench-peer: $(STAMP) $(PEER_VENV)/.installed
	$(BIN)/python -m benchmarks.peer --peer-python $(PEER_VENV)/bin/python $(PEER_ARGS)

clean:
	rm -rf $(VENV) $(PEER_VENV) build dist .pytest_cache .mypy_cache .ruff_cache

# NAB: start a server with $(CONFIG) for the run, stream ../shared/data/nab through it, print NAB scores.
NAB_DATA ?= ../shared/data/nab
.PHONY: nab
nab: $(STAMP)
	$(BIN)/streamserve-anomaly evaluate --data $(NAB_DATA) --serve $(CONFIG) --leave-out
