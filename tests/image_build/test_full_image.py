"""The disk image that ``make image`` built, inspected without mounting anything (opt-in:
``COMPTOIR_IMAGE_FULL=1``; the image is ``$COMPTOIR_IMAGE`` or ``out/comptoir-<version>.img``).

The partition table is read with ``sfdisk --json``, the boot partition with mtools (``mdir``/``mtype
-i IMAGE@@OFFSET``) and the ext4 partitions with ``debugfs`` (``IMAGE?offset=N``), all in place in the
image file. Needs fdisk, mtools, e2fsprogs and util-linux (blkid)."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    os.environ.get("COMPTOIR_IMAGE_FULL") != "1", reason="needs the image built by `make image`: COMPTOIR_IMAGE_FULL=1"
)
PARTITIONS = ["boot", "rootfs-a", "rootfs-b", "data"]
UNITS_ENABLED = {
    "graphical.target.wants": ["comptoir-kiosk.service"],
    "multi-user.target.wants": ["comptoir-sync.service", "comptoir-update-recover.service"],
    "timers.target.wants": ["comptoir-update.timer", "comptoir-backup.timer"],
    "sockets.target.wants": ["pcscd.socket"],
}


def image_path() -> Path:
    if os.environ.get("COMPTOIR_IMAGE"):
        return Path(os.environ["COMPTOIR_IMAGE"])
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert version
    return REPO / "out" / f"comptoir-{version.group(1)}.img"


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Partition:
    name: str
    offset: int
    size: int


@cache
def partitions() -> dict[str, Partition]:
    image = image_path()
    assert image.is_file(), f"{image}: build it first (make image)"
    table = json.loads(run("sfdisk", "--json", str(image)))["partitiontable"]
    assert table["label"] == "gpt"
    return {
        p["name"]: Partition(p["name"], p["start"] * table.get("sectorsize", 512), p["size"] * 512)
        for p in table["partitions"]
    }


def fs_type(name: str) -> str:
    out = run("blkid", "-p", "-o", "export", "-O", str(partitions()[name].offset), str(image_path()))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)["TYPE"]


def debugfs(name: str, request: str) -> str:
    device = f"{image_path()}?offset={partitions()[name].offset}"
    debugfs = shutil.which("debugfs") or "/usr/sbin/debugfs"
    done = subprocess.run([debugfs, "-R", request, device], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ext4_cat(name: str, path: str) -> str:
    text = debugfs(name, f"cat {path}")
    assert text, f"{name}:{path} is missing or empty"
    return text


def ext4_link(name: str, path: str) -> str:
    """The target of a symbolic link (debugfs `stat`: "Fast link dest")."""
    found = re.search(r'Fast link dest: "([^"]*)"', debugfs(name, f"stat {path}"))
    assert found, f"{name}:{path} is not a symbolic link"
    return found.group(1)


def ext4_ls(name: str, path: str) -> set[str]:
    lines = debugfs(name, f"ls -p {path}").splitlines()  # /inode/mode/uid/gid/name/[size/]
    return {line.split("/")[5] for line in lines if line.count("/") >= 6} - {".", ".."}


def vfat(path: str) -> str:
    return run("mtype", "-i", f"{image_path()}@@{partitions()['boot'].offset}", f"::{path}")


def vfat_ls(path: str = "/") -> set[str]:
    out = run("mdir", "-b", "-i", f"{image_path()}@@{partitions()['boot'].offset}", f"::{path}")
    return {line.rstrip("/").rsplit("/", 1)[-1] for line in out.split()}


def test_gpt_has_boot_two_root_slots_and_data():
    parts = partitions()
    assert list(parts) == PARTITIONS
    assert [fs_type(n) for n in PARTITIONS] == ["vfat", "ext4", "ext4", "ext4"]
    assert parts["rootfs-a"].size == parts["rootfs-b"].size


def test_boot_partition_has_the_pi_firmware_and_boots_slot_a_read_only():
    top = vfat_ls()
    assert {"start4.elf", "fixup4.dat", "bootcode.bin", "config.txt", "a", "b"} <= top
    config = vfat("config.txt").splitlines()
    assert "os_prefix=a/" in config and "arm_64bit=1" in config and "kernel=vmlinuz" in config
    slot_a = vfat_ls("a")
    assert {"vmlinuz", "initrd.img", "cmdline.txt", "bcm2711-rpi-4-b.dtb"} <= slot_a
    for slot in ("a", "b"):
        cmdline = vfat(f"{slot}/cmdline.txt").split()
        assert f"root=PARTLABEL=rootfs-{slot}" in cmdline and "ro" in cmdline and "rw" not in cmdline
        assert f"rauc.slot={slot.upper()}" in cmdline


def test_rauc_slots_are_the_root_partitions_and_the_backend_is_there():
    conf = configparser.ConfigParser()
    conf.read_string(ext4_cat("rootfs-a", "/etc/rauc/system.conf"))
    slots = {conf[s]["bootname"]: conf[s]["device"] for s in conf.sections() if s.startswith("slot.rootfs.")}
    assert slots == {"A": "/dev/disk/by-partlabel/rootfs-a", "B": "/dev/disk/by-partlabel/rootfs-b"}
    assert set(partitions()) >= {device.rsplit("/", 1)[1] for device in slots.values()}
    backend = conf["handlers"]["bootloader-custom-backend"]
    assert ext4_cat("rootfs-a", backend).startswith("#!/bin/sh")


def test_root_is_read_only_and_mounts_boot_and_data_by_label():
    mounts = {
        f[1]: f
        for f in (line.split() for line in ext4_cat("rootfs-a", "/etc/fstab").splitlines())
        if f and not f[0].startswith("#")
    }
    assert mounts["/"][3].split(",")[0] == "ro"
    assert mounts["/boot/firmware"][0] == "/dev/disk/by-partlabel/boot"
    assert mounts["/var/lib/comptoir"][0] == "/dev/disk/by-partlabel/data"
    assert mounts["/tmp"][2] == "tmpfs" and mounts["/var/log"][2] == "tmpfs"
    assert ext4_link("rootfs-a", "/etc/comptoir") == "/var/lib/comptoir/etc"
    assert ext4_ls("rootfs-a", "/var/lib/comptoir") == set()  # the data partition is mounted there


def test_users_and_enabled_units():
    users = {line.split(":")[0]: line.split(":") for line in ext4_cat("rootfs-a", "/etc/passwd").splitlines()}
    assert {"kiosk", "comptoir", "comptoir-update"} <= set(users)
    groups = {
        line.split(":")[0]: line.split(":")[3].split(",") for line in ext4_cat("rootfs-a", "/etc/group").splitlines()
    }
    assert {"input", "video", "render", "comptoir"} <= {g for g, members in groups.items() if "kiosk" in members}
    assert "comptoir-update" in groups["comptoir"]
    for wants, units in UNITS_ENABLED.items():
        present = ext4_ls("rootfs-a", f"/etc/systemd/system/{wants}")
        assert set(units) <= present, (wants, present)
    assert ext4_link("rootfs-a", "/etc/systemd/system/default.target").endswith("graphical.target")
    for exe in ("/usr/bin/cage", "/usr/bin/Xwayland", "/usr/sbin/pcscd", "/usr/bin/rauc", "/usr/bin/mosquitto_pub"):
        assert "Inode:" in debugfs("rootfs-a", f"stat {exe}"), exe


def test_data_partition_holds_the_release_and_a_migrated_database(tmp_path: Path):
    current = ext4_link("data", "/app/current")
    assert re.fullmatch(r"releases/[\w.+-]+", current), current
    assert ext4_link("data", "/app/good") == current
    release = json.loads(ext4_cat("data", f"/app/{current}/release.json"))
    assert release["version"] == current.split("/")[1]
    assert {"comptoir", "comptoir-hook"} <= ext4_ls("data", f"/app/{current}/bin")
    assert {"appliance", "kivy", "xkbcommon", "ui"} <= ext4_ls("data", f"/app/{current}/site")
    assert json.loads(ext4_cat("data", "/update/tuf/root.json"))["signed"]["_type"] == "root"
    db = tmp_path / "comptoir.db"
    debugfs("data", f"dump /data/comptoir.db {db}")
    conn = sqlite3.connect(db)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert version == release["schema_version"] > 0  # migrated by the release's own hook, in the image
    assert len(tables) > 5, tables
