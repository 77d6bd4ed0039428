# comptoir: `make demo` and `make test` work on a fresh Debian machine as root.
# Each target installs what it needs (apt packages, the .venv) idempotently, then runs.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the project uses: build chain for the sdists (evdev, xkbcommon),
# xkb keymaps for the keyboard-wedge driver, libdmtx/libzbar for the decode benchmark peers.
APT_PACKAGES := python3 python3-venv python3-dev gcc make pkg-config linux-libc-dev \
	libxkbcommon-dev xkb-data libdmtx0b libzbar0 \
	libpcsclite-dev swig pcscd vsmartcard-vpcd mosquitto

.PHONY: all deps apt venv test lint typecheck pytest demo bench clean

all: test

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory apt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

deps: $(VENV)/.installed
	@$(MAKE) --no-print-directory apt

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy

pytest: deps
	$(VENV)/bin/pytest -q -p no:cacheprovider

test: lint typecheck pytest

demo: deps
	$(VENV)/bin/comptoir demo

bench: deps
	$(PY) bench/decode.py
	$(PY) bench/session.py
	$(PY) bench/reconcile.py
	$(PY) bench/update.py
	$(PY) bench/sync.py
	$(PY) bench/cards.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
