# The two set-up commands of the README: `make demo` (train + sample) and `make test`.
# Each creates .venv on first use and installs minrnn into it, as a new user would.

PYTHON ?= python3
VENV ?= .venv
# A plain `torch` would pull a multi-GB CUDA build on Linux; override e.g. TORCH="torch==2.13.0+cpu".
TORCH ?= torch==2.13.0
# Offline machines that carry Tiny Shakespeare beside the repo; elsewhere the loader downloads it.
export MINRNN_DATA_DIR ?= $(abspath $(wildcard ../shared/data))

BIN := $(VENV)/bin
STAMP := $(VENV)/.minrnn-installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,plot]"  # plot: the demo writes its loss-curve PNG
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/minrnn train shakespeare --preset small --model mingru --out runs/demo
	$(BIN)/minrnn sample runs/demo --prompt "ROMEO:" --tokens 400

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
