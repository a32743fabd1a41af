# Two commands on a fresh machine with python3 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FUZZ_STAMP := $(VENV)/.installed-fuzz
#: seconds per fuzz target for `make fuzz`
FUZZ_SECONDS ?= 60
#: what `make lint` format-checks: every package, the fuzz targets, benchmarks, examples and
#: docs/build.py. tests/ joins once it has been formatted (`ruff format tests`).
FORMAT_PATHS ?= iii iii_protocol iii_transports iii_observability fuzz bench examples docs soak tests
#: Pythons (pyenv versions) for `make test-matrix`; each gets a venv .venv-X.Y
MATRIX ?= 3.10.13 3.13.0

.PHONY: demo test lint typecheck unit fuzz fuzz-smoke docs test-matrix bench bench-quick bench-profile soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(FUZZ_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz]'
	touch $(FUZZ_STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $(FORMAT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q --cov=iii_protocol --cov-branch --cov-report=term-missing --cov-fail-under=100 -p no:iii tests/protocol
	$(BIN)/python -m pytest -q --ignore=tests/protocol tests

# Every fuzz target under libFuzzer for FUZZ_SECONDS each (new inputs in fuzz/.work/).
fuzz: $(FUZZ_STAMP)
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

# Seconds: 3 s per target under atheris when it is installed, else the seed corpus replayed.
fuzz-smoke: $(STAMP)
	$(BIN)/python fuzz/run.py --smoke

test: lint typecheck unit fuzz-smoke

# The API reference from the docstrings (pdoc) into docs/api/ (git-ignored); fails on any
# pdoc warning. tests/test_docs.py runs the same build with --check in `make test`.
docs: $(STAMP)
	$(BIN)/python docs/build.py

# tests/protocol and tests/api on other Pythons, from pyenv (`MATRIX="3.12.1" make test-matrix`);
# a version pyenv does not have is skipped with one line.
test-matrix:
	.ci/test-matrix $(MATRIX)

# Benchmarks (never part of `make test`): ours vs the official iii-sdk 0.25.0 (installed
# into .cache/bench on first use) vs a bare client; writes bench/results/latest.{md,json}.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# cProfile / py-spy / tracemalloc of our hot paths: bench/results/profile.md
bench-profile: $(STAMP)
	$(BIN)/python -m bench.profile

# The soak (soak/README.md; `make test` runs a 20 s one): 300 connect/shutdown cycles, then
# 250 s of workers on every runtime calling each other under 64 engine faults; exit 1 when
# a call had no outcome or two, an outcome disagrees with its handler, or something leaked.
SOAK_ARGS ?=
soak: $(STAMP)
	$(BIN)/python -m soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .venv-* .cache .coverage fuzz/.work docs/api
