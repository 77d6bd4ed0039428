#!/bin/bash
# Build an arm64 Debian bookworm root filesystem with the comptoir release installed, and run the
# release's self-test inside it (qemu-user through binfmt_misc). The step of the image recipe that
# runs without the rest of the image: `make image` (README.md) builds the whole disk image.
#
#   sudo image-build/rootfs-selftest.sh [WORKDIR]        # default WORKDIR: /var/tmp/comptoir-rootfs
#
# Needs: root, debootstrap, qemu-user-static, binfmt_misc with a qemu-aarch64 entry, network access
# to a Debian archive (the build host's own, read from its apt sources by lib/mirror.sh, or
# $DEBIAN_MIRROR) and to PyPI (or the index pip is configured with). The debootstrapped base is cached in
# $COMPTOIR_IMAGE_CACHE (default /var/tmp/comptoir-image-cache): ~4 min the first time, seconds after.
# Prints the self-test's JSON (machine must be aarch64) and exits 0 when it passed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
WORK="${1:-/var/tmp/comptoir-rootfs}"
CACHE="${COMPTOIR_IMAGE_CACHE:-/var/tmp/comptoir-image-cache}"
SUITE=bookworm
PY="${PYTHON:-$REPO/.venv/bin/python}"
VERSION="${COMPTOIR_VERSION:-$("$PY" -c 'import tomllib;print(tomllib.load(open("'"$REPO"'/pyproject.toml","rb"))["project"]["version"])')}"
BASE_PACKAGES=python3,ca-certificates,python3-evdev,python3-pyscard
WHEEL_PLATFORMS=(manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_28_aarch64 manylinux_2_34_aarch64)
# Binary wheels for arm64 from PyPI. evdev, pyscard: Debian packages (no arm64 wheels on PyPI);
# xkbcommon: sdist only, built by arm64-wheels.sh for the full image, not needed by the self-test.
WHEEL_REQUIREMENTS=("cryptography>=42" "biip>=5.0" "python-stdnum>=1.20" "sqlite-utils>=4.2" "zxing-cpp>=2.3"
  "numpy>=1.26" "pillow>=10" "pyserial>=3.5" "httpx>=0.27" "paho-mqtt>=2.1" "lxml>=5.2" "authlib>=1.6" "joserfc>=1.0" "tuf>=5")

die() { echo "rootfs-selftest: $*" >&2; exit 1; }
# shellcheck source=lib/mirror.sh
. "$HERE/lib/mirror.sh"
MIRROR="$(resolve_debian_mirror)" || die "no Debian archive: set DEBIAN_MIRROR"
step() { printf '[%5ss] %s\n' "$SECONDS" "$*"; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static missing: apt-get install qemu-user-static"
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || die "binfmt_misc is not mounted and cannot be (no CAP_SYS_ADMIN or kernel without CONFIG_BINFMT_MISC)"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "no qemu-aarch64 binfmt entry (install qemu-user-static and binfmt-support)"
fi

BASE="$CACHE/base-$SUITE-arm64"
if [ ! -x "$BASE/usr/bin/python3" ]; then
  step "debootstrap $SUITE arm64 into $BASE (first run: several minutes under qemu)"
  rm -rf "$BASE.tmp"; mkdir -p "$CACHE"
  debootstrap --arch=arm64 --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$BASE.tmp" "$MIRROR"
  mv "$BASE.tmp" "$BASE"
fi

step "root filesystem: copy of the cached base"
rm -rf "$WORK"; mkdir -p "$WORK"
ROOTFS="$WORK/rootfs"
cp -a "$BASE" "$ROOTFS"
missing=$(chroot "$ROOTFS" dpkg-query -W -f='${Package} ${Status}\n' ${BASE_PACKAGES//,/ } 2>/dev/null | grep -vc "ok installed" || true)
if [ "$missing" != 0 ] || ! chroot "$ROOTFS" dpkg-query -W python3-pyscard >/dev/null 2>&1; then
  step "apt-get install ${BASE_PACKAGES//,/ } in the arm64 root"
  chroot "$ROOTFS" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive chroot "$ROOTFS" apt-get install -y -qq --no-install-recommends ${BASE_PACKAGES//,/ } >/dev/null
fi

step "arm64 wheels from PyPI"
WHEELS="$CACHE/wheels-arm64"
mkdir -p "$WHEELS"
platform_args=(); for p in "${WHEEL_PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
"$PY" -m pip download -q --only-binary=:all: "${platform_args[@]}" --python-version 3.11 --implementation cp \
  -d "$WHEELS" "${WHEEL_REQUIREMENTS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
rm -f "$WHEELS"/pip-*.whl

step "release archive $VERSION (reproducible comptoir wheel + arm64 wheels)"
(cd "$REPO" && "$PY" -m appliance.updates.cli release build --version "$VERSION" --out "$WORK/dist" \
  --wheelhouse "$WHEELS" --binary-dependency python3-evdev --binary-dependency python3-pyscard \
  --binary-dependency xkbcommon) >/dev/null
ARCHIVE="$WORK/dist/comptoir-$VERSION.tar"

step "install the release into /var/lib/comptoir/app of the root (files only; code runs in the chroot)"
(cd "$REPO" && "$PY" - "$ARCHIVE" "$ROOTFS" <<'PYEOF'
import sys
from pathlib import Path
from appliance.updates.installer import install_archive
from appliance.updates.layout import Layout

archive, rootfs = Path(sys.argv[1]), Path(sys.argv[2])
layout = Layout(rootfs / "var/lib/comptoir/app", rootfs / "var/lib/comptoir/update", rootfs / "run/comptoir")
manifest = install_archive(archive, layout, machine="aarch64", python="/usr/bin/python3")
layout.switch_current(manifest.version)
layout.switch_link(layout.good, manifest.version)
print(f"installed {manifest.version}: {len(manifest.wheels)} wheels listed")
PYEOF
)
mkdir -p "$ROOTFS/var/lib/comptoir/data"

step "migrate and self-test inside the arm64 root (qemu-aarch64)"
chroot "$ROOTFS" /var/lib/comptoir/app/current/bin/comptoir-hook migrate --db /var/lib/comptoir/data/comptoir.db
RESULT=$(chroot "$ROOTFS" /var/lib/comptoir/app/current/bin/comptoir-hook selftest --db /var/lib/comptoir/data/comptoir.db)
echo "$RESULT"
echo "$RESULT" | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r["ok"] and r["machine"]=="aarch64" else 1)' \
  || die "self-test failed inside the arm64 root"
step "ok: comptoir $VERSION starts its self-test on arm64 (rootfs: $ROOTFS, $(du -sh "$ROOTFS" | cut -f1))"
