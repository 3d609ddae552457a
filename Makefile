# The two commands of the README are `make dev` and `make test`; the rest are parts of them.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: venv dev test lint format stack-up stack-down migrate bench bench-quick soak clean

$(BIN)/.installed: pyproject.toml devtools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# uv resolves and installs the same versions pip would, in well under a minute where pip
	# takes two (CI builds this venv afresh on every run). --compile-bytecode as pip does:
	# where PYTHONDONTWRITEBYTECODE is set, every process would compile Dagster anew (~20 s).
	$(BIN)/pip install -q 'uv>=0.9,<1'
	# The runtime package with its test tools, and the development package (the local
	# stack and `seed`), which a production install does not get.
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]' -e ./devtools
	touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

stack-up: venv
	$(BIN)/dicom-pipeline stack up

stack-down: venv
	$(BIN)/dicom-pipeline stack down

migrate: venv
	$(BIN)/dicom-pipeline db upgrade

test: venv
	VENV=$(VENV) bash scripts/test.sh

dev: venv
	VENV=$(VENV) bash scripts/dev.sh

clean: stack-down
	rm -rf $(VENV) .stack

bench: venv
	$(BIN)/dicom-pipeline stack up
	$(BIN)/python -m bench.run

bench-quick: venv
	$(BIN)/dicom-pipeline stack up
	$(BIN)/python -m bench.run --quick

# A steady workload under a fault every 30 s, then the checker (bench/soak.py); MINUTES=N.
soak: venv
	$(BIN)/dicom-pipeline stack up
	$(BIN)/python -m bench.soak --minutes $(or $(MINUTES),30)
