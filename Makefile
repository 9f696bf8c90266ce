# Two commands on a fresh machine with Python 3.11:
#   make run    installs into .venv (first time only) and runs the default job
#   make test   installs into .venv (first time only) and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stratum-installed

.PHONY: run test install clean

run: $(STAMP)
	$(BIN)/stratum run

test: $(STAMP)
	$(BIN)/python -m pytest -n auto

install: $(STAMP)

# torch/torchvision first, pinned to the releases this project is tested with
# (pip takes them from a local wheel cache where one is configured).
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
