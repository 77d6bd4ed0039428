#!/bin/bash
# The full device image: Debian bookworm arm64 for Raspberry Pi 4 class boards, a GPT disk image with
# boot (vfat, Pi firmware) + rootfs-a + rootfs-b (ext4, read-only, RAUC slots) + data (ext4).
# `make image` runs it (image-build/README.md). No loop device and no mount: every file system is
# made as its own file (mkfs.ext4 -d, mkfs.vfat + mcopy) and written into the disk image at its
# partition's offset (sfdisk --json, dd conv=notrunc).
#
#   image-build/mmdebstrap-image.sh OUT.img RELEASE.tar ROOT.json        (as root)
#
# Environment: DEBIAN_MIRROR (default: the build host's Debian archive, image-build/lib/mirror.sh; a
# dated snapshot of the archive for a bit-for-bit reproducible build), SOURCE_DATE_EPOCH, IMAGE_SIZE
# (default 8G), PYTHON (default .venv/bin/python). Needs mmdebstrap, arch-test, qemu-user-static with
# binfmt_misc (the package scripts and the app's self-test run under qemu-aarch64), e2fsprogs,
# dosfstools, mtools, fdisk. ROOT_PASSWORD_HASH_FILE: a file holding a crypt(3) hash (`openssl
# passwd -6`), root's password for the installer's console login at provisioning; without it root
# stays locked (no login at all).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
OUT="${1:?image file}"; ARCHIVE="${2:?release archive}"; TRUSTED_ROOT="${3:?TUF root.json}"
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"; export SOURCE_DATE_EPOCH
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH"; export E2FSPROGS_FAKE_TIME
IMAGE_SIZE="${IMAGE_SIZE:-8G}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
# shellcheck source=lib/mirror.sh
. "$HERE/lib/mirror.sh"
MIRROR="$(resolve_debian_mirror)"

# raspi-firmware is in non-free-firmware. linux-image-arm64 carries the Pi 4 device trees (broadcom/)
# and pulls initramfs-tools (root=PARTLABEL= is resolved by udev in the initramfs).
# Kiosk: cage (wlroots) + xwayland: the Kivy wheel's bundled SDL2 has the X11 and KMSDRM video
# drivers but no Wayland one, so the app is an X client of cage's Xwayland (SDL_VIDEODRIVER=x11);
# the X client libraries and GL/EGL/GLES (Mesa: vc4/v3d on the Pi) are what that SDL2 dlopens.
PACKAGES=(systemd-sysv systemd-resolved udev dbus polkitd pkexec kmod
  raspi-firmware linux-image-arm64 rauc
  python3 ca-certificates
  cage xwayland seatd libgl1 libegl1 libgles2 libgl1-mesa-dri libgbm1 libdrm2
  libx11-6 libx11-xcb1 libxext6 libxcursor1 libxi6 libxrandr2 libxfixes3 libxss1 libmtdev1 fonts-dejavu-core
  pcscd libccid python3-pyscard python3-evdev libxkbcommon0 mosquitto-clients openssl
  e2fsprogs dosfstools fdisk chrony)
SIZE_BOOT=256MiB; SIZE_ROOT=2GiB

step() { printf '[image %5ss] %s\n' "$SECONDS" "$*"; }
die() { echo "mmdebstrap-image: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap root mode, chroot)"
for tool in mmdebstrap arch-test mkfs.ext4 mkfs.vfat mcopy sfdisk; do
  command -v "$tool" >/dev/null || die "$tool missing (make image-apt)"
done
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
  || die "no qemu-aarch64 binfmt_misc entry (apt-get install qemu-user-static binfmt-support)"
[ -f "$ARCHIVE" ] || die "no release archive $ARCHIVE"
[ -f "$TRUSTED_ROOT" ] || die "no TUF root $TRUSTED_ROOT"
ARCHIVE="$(readlink -f "$ARCHIVE")"; TRUSTED_ROOT="$(readlink -f "$TRUSTED_ROOT")"
if [ -n "${ROOT_PASSWORD_HASH_FILE:-}" ]; then
  [ -s "$ROOT_PASSWORD_HASH_FILE" ] || die "ROOT_PASSWORD_HASH_FILE: no file $ROOT_PASSWORD_HASH_FILE"
  ROOT_PASSWORD_HASH_FILE="$(readlink -f "$ROOT_PASSWORD_HASH_FILE")"; export ROOT_PASSWORD_HASH_FILE
fi
WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/comptoir-image.XXXXXX")"; trap 'rm -rf "$WORK"' EXIT
# Fixed identifiers (disk, partitions, file systems): the same inputs give the same image.
uuid() { "$PY" -c 'import sys, uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "comptoir-image:" + sys.argv[1]))' "$1"; }

# 1. root filesystem (qemu-user runs the arm64 maintainer scripts)
step "mmdebstrap bookworm arm64 from $MIRROR (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
ROOTFS="$WORK/rootfs"
# The initramfs is made once, at the end: under qemu one run takes ~15 min, and the kernel's
# postinst plus the initramfs-tools trigger would make it twice (update-initramfs is diverted to a
# no-op while the packages install).
mmdebstrap --arch=arm64 --variant=minbase --components=main,non-free-firmware \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
  --essential-hook='mkdir -p "$1/usr/sbin" && printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"' \
  --customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
  --customize-hook='chroot "$1" sh -c '"'"'for k in /lib/modules/*; do update-initramfs -c -k "${k##*/}"; done'"'" \
  --customize-hook='chroot "$1" useradd --system --create-home --home-dir /var/lib/comptoir/kiosk --user-group --groups input,video,render kiosk' \
  --customize-hook='chroot "$1" useradd --system --no-create-home --home-dir /var/lib/comptoir --user-group comptoir' \
  --customize-hook='chroot "$1" useradd --system --no-create-home --home-dir /var/lib/comptoir --user-group --groups comptoir comptoir-update' \
  --customize-hook='chroot "$1" usermod -aG comptoir kiosk' \
  --customize-hook="copy-in $HERE/rootfs/etc/fstab /etc" \
  --customize-hook="copy-in $HERE/rootfs/etc/polkit-1/rules.d/50-comptoir.rules /etc/polkit-1/rules.d" \
  --customize-hook="copy-in $HERE/rootfs/etc/systemd/network/80-wired.network /etc/systemd/network" \
  --customize-hook='mkdir -p "$1/etc/rauc" "$1/usr/lib/comptoir"' \
  --customize-hook="copy-in $HERE/rauc/system.conf /etc/rauc" \
  --customize-hook="copy-in $HERE/rauc/rauc-rpi-boot /usr/lib/comptoir" \
  --customize-hook="copy-in $REPO/systemd/comptoir-kiosk.service $REPO/systemd/comptoir-sync.service $REPO/systemd/comptoir-update.service $REPO/systemd/comptoir-update.timer $REPO/systemd/comptoir-update-recover.service $REPO/systemd/comptoir-backup.service $REPO/systemd/comptoir-backup.timer /etc/systemd/system" \
  --customize-hook='chroot "$1" systemctl enable comptoir-update-recover.service comptoir-kiosk.service comptoir-sync.service comptoir-update.timer comptoir-backup.timer pcscd.socket systemd-networkd.service systemd-resolved.service' \
  --customize-hook='chroot "$1" systemctl set-default graphical.target' \
  --customize-hook='mkdir -p "$1/var/lib/comptoir/etc/pki" && rm -rf "$1/etc/comptoir" && ln -s /var/lib/comptoir/etc "$1/etc/comptoir"' \
  --customize-hook="copy-in $HERE/rootfs/etc/comptoir/box.env.example /var/lib/comptoir/etc" \
  --customize-hook='echo comptoir > "$1/etc/hostname" && printf "127.0.0.1\tlocalhost\n127.0.1.1\tcomptoir\n::1\tlocalhost ip6-localhost ip6-loopback\n" > "$1/etc/hosts"' \
  --customize-hook='ln -sf ../run/systemd/resolve/stub-resolv.conf "$1/etc/resolv.conf"' \
  --customize-hook='rm -f "$1/etc/machine-id" && touch "$1/etc/machine-id"' \
  --customize-hook='ln -s /var/lib/comptoir/app/current/bin/comptoir "$1/usr/local/bin/comptoir"' \
  --customize-hook='if [ -n "${ROOT_PASSWORD_HASH_FILE:-}" ]; then chroot "$1" usermod -p "$(cat "$ROOT_PASSWORD_HASH_FILE")" root; fi' \
  bookworm "$ROOTFS" "$MIRROR"
chmod 0755 "$ROOTFS/usr/lib/comptoir/rauc-rpi-boot"

# 2. the app on the data partition's tree, with the same installer as updates (releases/<v>, current,
#    good), migrated and self-tested inside the arm64 root (qemu-aarch64)
step "install the release $(basename "$ARCHIVE") into the data tree"
DATA="$ROOTFS/var/lib/comptoir"
(cd "$REPO" && "$PY" - "$ARCHIVE" "$DATA" <<'PYEOF'
import sys
from pathlib import Path
from appliance.updates.installer import install_archive
from appliance.updates.layout import Layout
data = Path(sys.argv[2])
layout = Layout(data / "app", data / "update", Path("/nonexistent"))
m = install_archive(Path(sys.argv[1]), layout, machine="aarch64", python="/usr/bin/python3")
layout.switch_current(m.version)
layout.switch_link(layout.good, m.version)
print(f"installed {m.version}: {len(m.wheels)} wheels listed")
PYEOF
)
mkdir -p "$DATA/update/tuf" "$DATA/data" "$DATA/rauc"
install -m 0644 "$TRUSTED_ROOT" "$DATA/update/tuf/root.json"
step "migrate and self-test inside the arm64 root"
chroot "$ROOTFS" /var/lib/comptoir/app/current/bin/comptoir-hook migrate --db /var/lib/comptoir/data/comptoir.db
SELFTEST=$(chroot "$ROOTFS" /var/lib/comptoir/app/current/bin/comptoir-hook selftest --db /var/lib/comptoir/data/comptoir.db)
echo "$SELFTEST"
echo "$SELFTEST" | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); sys.exit(0 if r["ok"] and r["machine"]=="aarch64" else 1)' \
  || die "self-test failed inside the arm64 root"
step "the kiosk's libraries import on arm64 (Kivy with its SDL2, xkbcommon, evdev, pyscard)"
chroot "$ROOTFS" /usr/bin/env KIVY_NO_ARGS=1 KIVY_NO_CONSOLELOG=1 KIVY_HOME=/tmp/kivy-home \
  PYTHONPATH=/var/lib/comptoir/app/current/site /usr/bin/python3 -c \
  'import kivy, kivy.core.window._window_sdl2, xkbcommon.xkb, evdev, smartcard.scard, drivers.keymaps, ui.production; print("kiosk imports: ok, kivy", kivy.__version__)'
rm -rf "$ROOTFS/tmp/kivy-home"
# Ownership on the data partition (names resolved in the image): app/ and update/ belong to the update
# agent (its units' StateDirectory=), the database to `comptoir` with the group writable (the kiosk and
# the agent are members), /etc/comptoir (box.env, pki/) to `comptoir`.
chroot "$ROOTFS" sh -e -c 'cd /var/lib/comptoir
  chown -R comptoir-update:comptoir-update app update
  chown -R comptoir:comptoir data etc && chmod 2770 data && chmod 0750 etc/pki
  chmod 0660 data/comptoir.db*'
mv "$DATA" "$WORK/data"; mkdir -p "$DATA"

# 3. boot partition: Pi firmware at the top, one directory per slot (config.txt's os_prefix= picks
#    it: kernel, initramfs, device trees and cmdline.txt of that slot)
step "boot files"
KVER="$(basename "$(ls "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -1)")"; KVER="${KVER#vmlinuz-}"
[ -f "$ROOTFS/boot/initrd.img-$KVER" ] || die "no initramfs for $KVER"
BOOT="$WORK/boot"
mkdir -p "$BOOT/a" "$BOOT/b"
cp "$ROOTFS"/usr/lib/raspi-firmware/* "$BOOT/"
cp "$HERE/boot/config.txt" "$BOOT/config.txt"
cp "$ROOTFS/boot/vmlinuz-$KVER" "$BOOT/a/vmlinuz"
cp "$ROOTFS/boot/initrd.img-$KVER" "$BOOT/a/initrd.img"
cp "$ROOTFS"/usr/lib/linux-image-"$KVER"/broadcom/bcm2711-*.dtb "$BOOT/a/"
for slot in a b; do
  sed "s/@SLOT@/$slot/g; s/@BOOTNAME@/${slot^^}/g" "$HERE/boot/cmdline.txt" > "$BOOT/$slot/cmdline.txt"
done
rm -rf "$ROOTFS/boot/firmware"; mkdir -p "$ROOTFS/boot/firmware"   # the boot partition is mounted here

# 4. file systems, each in its own file, then the GPT disk image
step "file systems"
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"; truncate -s "$IMAGE_SIZE" "$OUT"
sfdisk --quiet "$OUT" <<PARTS
label: gpt
label-id: $(uuid disk)
name=boot, size=$SIZE_BOOT, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=$(uuid part-boot)
name=rootfs-a, size=$SIZE_ROOT, type=linux, uuid=$(uuid part-rootfs-a)
name=rootfs-b, size=$SIZE_ROOT, type=linux, uuid=$(uuid part-rootfs-b)
name=data, type=linux, uuid=$(uuid part-data)
PARTS
# start and size (bytes) of partition N
part() { sfdisk --json "$OUT" | "$PY" -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1])-1]; print(p["start"]*512, p["size"]*512)' "$1"; }
read -r BOOT_START BOOT_BYTES < <(part 1)
read -r A_START A_BYTES < <(part 2)
read -r B_START B_BYTES < <(part 3)
read -r DATA_START DATA_BYTES < <(part 4)

ext4() {  # label, bytes, file [source dir]
  local opts="root_owner=0:0,hash_seed=$(uuid "hash-$1")"
  mkfs.ext4 -q -F -L "$1" -U "$(uuid "fs-$1")" -E "$opts" ${4:+-d "$4"} "$3" "$(( $2 / 1024 ))k"
}
ext4 rootfs-a "$A_BYTES" "$WORK/rootfs-a.img" "$ROOTFS"
ext4 rootfs-b "$B_BYTES" "$WORK/rootfs-b.img"
ext4 data "$DATA_BYTES" "$WORK/data.img" "$WORK/data"
VOLID="$(uuid fs-boot | tr -d - | cut -c1-8)"
mkfs.vfat -C -F 32 -n BOOT -i "$VOLID" "$WORK/boot.img" "$(( BOOT_BYTES / 1024 ))" >/dev/null
(cd "$BOOT" && find . -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +)
mcopy -i "$WORK/boot.img" -s -m -p -Q "$BOOT"/* ::/

step "write the partitions into $OUT"
put() { dd if="$1" of="$OUT" bs=4M seek="$2" oflag=seek_bytes conv=notrunc,sparse status=none; }
put "$WORK/boot.img" "$BOOT_START"
put "$WORK/rootfs-a.img" "$A_START"
put "$WORK/rootfs-b.img" "$B_START"
put "$WORK/data.img" "$DATA_START"

used() { # used size of an ext4 file system, MiB
  dumpe2fs -h "$1" 2>/dev/null | awk -F: '/^Block count/{t=$2} /^Free blocks/{f=$2} /^Block size/{b=$2} END{printf "%d MiB of %d MiB", (t-f)*b/1048576, t*b/1048576}'
}
step "done: $OUT ($(du -h --apparent-size "$OUT" | cut -f1) apparent, $(du -h "$OUT" | cut -f1) allocated)"
echo "  boot:     $(du -sm "$BOOT" | cut -f1) MiB of files (kernel $KVER)"
echo "  rootfs-a: $(used "$WORK/rootfs-a.img")"
echo "  rootfs-b: $(used "$WORK/rootfs-b.img") (empty: the first OS update writes it)"
echo "  data:     $(used "$WORK/data.img")"
echo "first boot: docs/updates.md, 'Provisioning a new box'"
