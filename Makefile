# comptoir: `make demo` and `make test` work on a fresh Debian machine as root.
# Each target installs what it needs (apt packages, the .venv) idempotently, then runs.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the project uses: build chain for the sdists (evdev, xkbcommon),
# xkb keymaps for the keyboard-wedge driver, libdmtx/libzbar for the decode benchmark peers,
# GL/EGL with Mesa's software renderer and mtdev for the Kivy kiosk (offscreen in tests and the demo),
# mosquitto and postgresql for the back office's tests (each test run starts its own on 127.0.0.1),
# chromium and its WebDriver for the back office's operator page tested in a headless browser.
APT_PACKAGES := python3 python3-venv python3-dev gcc make pkg-config linux-libc-dev \
	libxkbcommon-dev xkb-data libdmtx0b libzbar0 \
	libgl1 libgl1-mesa-dri libegl1 libmtdev1 \
	libpcsclite-dev swig pcscd vsmartcard-vpcd mosquitto postgresql chromium chromium-driver

.PHONY: all deps apt venv test lint typecheck pytest demo bench image image-apt image-selftest clean

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

# The kiosk against the sandbox: a window with a developer panel when there is a display; otherwise
# offscreen, a scripted session with a screenshot of every step and a transcript in demo-out/.
demo: deps
	$(VENV)/bin/comptoir demo --out demo-out

bench: deps
	$(PY) bench/decode.py
	$(PY) bench/session.py
	$(PY) bench/reconcile.py
	$(PY) bench/update.py
	$(PY) bench/sync.py
	$(PY) bench/backoffice.py
	$(PY) bench/cards.py
	$(PY) bench/kiosk.py

# The device image (image-build/README.md): no loop device nor mount needed (each file system is made
# as a file, then written into the GPT image). `image-selftest` builds the arm64 root filesystem with
# the app under qemu-user and runs its self-test inside (a few minutes).
# IMAGE_ROOT_JSON: the TUF repository's root.json from the offline release machine; without it the
# image trusts DEVELOPMENT keys generated once in build/dev-release/ (never for a real box).
# DEBIAN_MIRROR: the Debian archive (default: the build host's own, from its apt sources).
IMAGE_APT_PACKAGES := mmdebstrap arch-test debootstrap qemu-user-static binfmt-support rauc dosfstools e2fsprogs \
	fdisk mtools
VERSION ?= $(shell $(PY) -c "import appliance; print(appliance.__version__)" 2>/dev/null)
IMAGE_ROOT_JSON ?=
DEV_RELEASE := build/dev-release

image-apt:
	@$(MAKE) --no-print-directory apt APT_PACKAGES="$(IMAGE_APT_PACKAGES)"

$(DEV_RELEASE)/repo/metadata/root.json:
	@echo "image: DEVELOPMENT release keys and TUF repository in $(DEV_RELEASE)/ (not for a real box)"
	@mkdir -p $(DEV_RELEASE)
	@echo "DEVELOPMENT keys made by 'make image' without IMAGE_ROOT_JSON: never trust them on a real box." \
	  > $(DEV_RELEASE)/README
	$(VENV)/bin/comptoir release keys --keys $(DEV_RELEASE)/keys >/dev/null
	$(VENV)/bin/comptoir release init --repo $(DEV_RELEASE)/repo --keys $(DEV_RELEASE)/keys

image: deps image-apt
	image-build/arm64-wheels.sh dist/wheels-arm64
	$(VENV)/bin/comptoir release build --version $(VERSION) --out dist --wheelhouse dist/wheels-arm64 \
	  --binary-dependency python3-evdev --binary-dependency python3-pyscard
	@if [ -z "$(IMAGE_ROOT_JSON)" ]; then $(MAKE) --no-print-directory $(DEV_RELEASE)/repo/metadata/root.json; fi
	image-build/mmdebstrap-image.sh out/comptoir-$(VERSION).img dist/comptoir-$(VERSION).tar \
	  $(or $(IMAGE_ROOT_JSON),$(DEV_RELEASE)/repo/metadata/root.json)

image-selftest: deps image-apt
	image-build/rootfs-selftest.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
