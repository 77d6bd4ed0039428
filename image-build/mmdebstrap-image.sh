#!/bin/bash
# The full device image (documented; `make image` runs it where loop devices are allowed — not in
# the development sandbox, which only runs rootfs-selftest.sh). Debian bookworm arm64 for Raspberry
# Pi 4/5: boot (vfat) + rootfs-a + rootfs-b (ext4, read-only, RAUC slots) + data (ext4).
#
#   sudo image-build/mmdebstrap-image.sh OUT.img RELEASE.tar ROOT.json
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${1:?image file}"; ARCHIVE="${2:?release archive}"; TRUSTED_ROOT="${3:?TUF root.json}"
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"; export SOURCE_DATE_EPOCH
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
PACKAGES=(systemd-sysv udev dbus polkitd pkexec raspi-firmware linux-image-arm64 u-boot-rpi rauc
  python3 ca-certificates cage seatd libgl1-mesa-dri libsdl2-2.0-0 fonts-dejavu-core
  pcscd libccid python3-pyscard python3-evdev libxkbcommon0 mosquitto-clients openssl
  e2fsprogs dosfstools fdisk chrony)

# 1. root filesystem, reproducibly (snapshot mirror + SOURCE_DATE_EPOCH), with qemu-user for the hooks
mmdebstrap --arch=arm64 --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --customize-hook='chroot "$1" useradd --system --create-home --home-dir /var/lib/comptoir/kiosk --groups input,video,render kiosk' \
  --customize-hook='chroot "$1" useradd --system --no-create-home --home-dir /var/lib/comptoir comptoir' \
  --customize-hook='chroot "$1" useradd --system --no-create-home --groups comptoir comptoir-update' \
  --customize-hook='chroot "$1" usermod -aG comptoir kiosk' \
  --customize-hook="copy-in $HERE/rootfs/etc/fstab /etc" \
  --customize-hook="copy-in $HERE/rootfs/etc/polkit-1/rules.d/50-comptoir.rules /etc/polkit-1/rules.d" \
  --customize-hook="copy-in $HERE/rauc/system.conf /etc/rauc" \
  --customize-hook="copy-in $HERE/../systemd/comptoir-kiosk.service $HERE/../systemd/comptoir-sync.service $HERE/../systemd/comptoir-update.service $HERE/../systemd/comptoir-update.timer $HERE/../systemd/comptoir-update-recover.service $HERE/../systemd/comptoir-backup.service $HERE/../systemd/comptoir-backup.timer /etc/systemd/system" \
  --customize-hook='chroot "$1" systemctl enable comptoir-update-recover.service comptoir-kiosk.service comptoir-sync.service comptoir-update.timer comptoir-backup.timer pcscd.socket' \
  --customize-hook='chroot "$1" systemctl set-default graphical.target' \
  --customize-hook='mkdir -p "$1/var/lib/comptoir/etc" && rm -rf "$1/etc/comptoir" && ln -s /var/lib/comptoir/etc "$1/etc/comptoir"' \
  bookworm "$WORK/rootfs.tar" "http://snapshot.debian.org/archive/debian/20250520T000000Z/"

# 2. the app on the data partition's tree: same installer as updates (releases/<v>, current, good)
mkdir -p "$WORK/rootfs" "$WORK/data"
tar -C "$WORK/rootfs" -xf "$WORK/rootfs.tar"
python3 - "$ARCHIVE" "$WORK/data" <<'PY'
import sys
from pathlib import Path
from appliance.updates.installer import install_archive
from appliance.updates.layout import Layout
layout = Layout(Path(sys.argv[2]) / "app", Path(sys.argv[2]) / "update", Path("/nonexistent"))
m = install_archive(Path(sys.argv[1]), layout, machine="aarch64", python="/usr/bin/python3")
layout.switch_current(m.version); layout.switch_link(layout.good, m.version)
PY
mkdir -p "$WORK/data/update/tuf" "$WORK/data/data" "$WORK/data/etc/pki"
cp "$TRUSTED_ROOT" "$WORK/data/update/tuf/root.json"
cp -a "$WORK/data/." "$WORK/rootfs/var/lib/comptoir/"   # for the self-test below
chroot "$WORK/rootfs" /var/lib/comptoir/app/current/bin/comptoir-hook migrate --db /var/lib/comptoir/data/comptoir.db
chroot "$WORK/rootfs" /var/lib/comptoir/app/current/bin/comptoir-hook selftest --db /var/lib/comptoir/data/comptoir.db
cp -a "$WORK/rootfs/var/lib/comptoir/." "$WORK/data/"; rm -rf "$WORK/rootfs/var/lib/comptoir/"*

# 3. partitions and file systems (loop devices needed from here)
truncate -s 8G "$OUT"
sfdisk "$OUT" <<'PARTS'
label: gpt
name=boot, size=256MiB, type=uefi
name=rootfs-a, size=2GiB
name=rootfs-b, size=2GiB
name=data, type=linux
PARTS
LOOP="$(losetup --show -fP "$OUT")"; trap 'losetup -d "$LOOP"; rm -rf "$WORK"' EXIT
mkfs.vfat -n BOOT "${LOOP}p1"
mkfs.ext4 -q -L rootfs-a -d "$WORK/rootfs" -E root_owner=0:0 "${LOOP}p2"
mkfs.ext4 -q -L rootfs-b "${LOOP}p3"
mkfs.ext4 -q -L data -d "$WORK/data" "${LOOP}p4"
mkdir -p "$WORK/boot" && mount "${LOOP}p1" "$WORK/boot" && cp -a "$WORK/rootfs/boot/firmware/." "$WORK/boot/" && umount "$WORK/boot"
echo "image: $OUT (first boot: docs/updates.md, 'Provisioning a new box')"
