#!/bin/bash
# The arm64 wheelhouse of a release: every dependency of pyproject.toml as a CPython 3.11 aarch64 wheel.
#
#   image-build/arm64-wheels.sh WHEELHOUSE        # `make image` runs it with dist/wheels-arm64
#
# - Binary wheels come from PyPI (or the index pip is configured with): `pip download --only-binary
#   --platform manylinux…_aarch64`, the same as rootfs-selftest.sh, plus Kivy (its manylinux wheel
#   bundles SDL2 with the X11 and KMSDRM video drivers).
# - xkbcommon has no wheel on PyPI: its sdist is built into a linux_aarch64 wheel inside a throwaway
#   bookworm arm64 root (mmdebstrap, qemu-user; gcc + libxkbcommon-dev + python3-cffi; the root is
#   discarded, only the wheel is kept). About 5 minutes the first time; skipped when the wheel is there.
# - evdev and pyscard are not built: the image installs Debian's python3-evdev and python3-pyscard
#   (the release lists them as binary dependencies).
#
# Needs root (mmdebstrap, chroot), mmdebstrap, arch-test, qemu-user-static with binfmt_misc, and the
# build host's Debian archive (image-build/lib/mirror.sh; DEBIAN_MIRROR overrides it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="${1:?wheelhouse directory}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
# shellcheck source=lib/mirror.sh
. "$HERE/lib/mirror.sh"

WHEEL_PLATFORMS=(manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_28_aarch64 manylinux_2_34_aarch64)
WHEEL_REQUIREMENTS=("cryptography>=42" "biip>=5.0" "python-stdnum>=1.20" "sqlite-utils>=4.2" "zxing-cpp>=2.3"
  "numpy>=1.26" "pillow>=10" "pyserial>=3.5" "httpx>=0.27" "paho-mqtt>=2.1" "lxml>=5.2" "authlib>=1.6" "joserfc>=1.0" "tuf>=5" "kivy>=2.3,<2.4")
XKBCOMMON="xkbcommon>=1.5"
BUILD_PACKAGES=gcc,libc6-dev,python3-dev,libxkbcommon-dev,python3-cffi,python3-setuptools,python3-wheel,python3-pip

step() { printf '[arm64-wheels %5ss] %s\n' "$SECONDS" "$*"; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

step "binary wheels from the package index"
platform_args=(); for p in "${WHEEL_PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
"$PY" -m pip download -q --only-binary=:all: "${platform_args[@]}" --python-version 3.11 --implementation cp \
  -d "$OUT" "${WHEEL_REQUIREMENTS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
rm -f "$OUT"/pip-*.whl
ls "$OUT"/[Kk]ivy-*aarch64*.whl >/dev/null || { echo "arm64-wheels: no Kivy aarch64 wheel downloaded" >&2; exit 1; }

if ls "$OUT"/xkbcommon-*-linux_aarch64.whl >/dev/null 2>&1; then
  step "xkbcommon: $(basename "$(ls "$OUT"/xkbcommon-*-linux_aarch64.whl)") already built"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "arm64-wheels: building xkbcommon needs root (mmdebstrap, chroot)" >&2; exit 1; }
MIRROR="$(resolve_debian_mirror)"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download -q --no-deps --no-binary=:all: -d "$WORK/sdist" "$XKBCOMMON" 2>&1 | grep -v "^WARNING: Location" || true
SDIST="$(ls "$WORK"/sdist/xkbcommon-*.tar.gz)"
step "xkbcommon: building $(basename "$SDIST") in a throwaway bookworm arm64 root (mirror $MIRROR)"
mmdebstrap --quiet --arch=arm64 --variant=apt --format=null --include="$BUILD_PACKAGES" \
  --customize-hook="copy-in $SDIST /tmp" \
  --customize-hook='chroot "$1" python3 -m pip wheel -q --no-deps --no-build-isolation --no-index -w /tmp/wheels /tmp/'"$(basename "$SDIST")" \
  --customize-hook="copy-out /tmp/wheels $WORK" \
  bookworm /dev/null "$MIRROR"
cp "$WORK"/wheels/xkbcommon-*-linux_aarch64.whl "$OUT/"
step "xkbcommon: $(basename "$(ls "$OUT"/xkbcommon-*-linux_aarch64.whl)")"
