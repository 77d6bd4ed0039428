"""The image recipe: quick consistency checks always (scripts parse, mirror detection, the RAUC boot backend,
slot and partition names); the arm64 root filesystem self-test (debootstrap +
qemu-user, about 2 minutes with a cached base, 6 without) only when ``COMPTOIR_IMAGE_TEST=1``."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "image-build"
SYSTEMD = HERE.parent / "systemd"


@pytest.mark.parametrize(
    "script", ["rootfs-selftest.sh", "mmdebstrap-image.sh", "arm64-wheels.sh", "rauc/rauc-rpi-boot", "lib/mirror.sh"]
)
def test_scripts_parse_and_are_executable(script: str):
    path = HERE / script
    assert script.startswith("lib/") or os.access(path, os.X_OK)
    shell = "/bin/sh" if path.read_text().startswith("#!/bin/sh") else "/bin/bash"
    assert subprocess.run([shell, "-n", str(path)], capture_output=True, timeout=10).returncode == 0


def test_no_script_names_a_package_archive_host():
    """The Debian archive comes from the build host's apt sources or DEBIAN_MIRROR, never the recipe."""
    for path in [*HERE.rglob("*.sh"), HERE.parent / "Makefile"]:
        assert not re.search(r"https?://[a-z0-9.-]+\.(org|net|com)", path.read_text()), path


def mirror(etc: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = f'. "{HERE}/lib/mirror.sh" && resolve_debian_mirror "{etc}"'
    clean = {k: v for k, v in os.environ.items() if k != "DEBIAN_MIRROR"}
    return subprocess.run(
        ["/bin/bash", "-c", script], capture_output=True, text=True, timeout=10, env={**clean, **(env or {})}
    )


DEB822 = """\
Types: deb
URIs: https://apt.example.test/node_20.x
Suites: nodistro
Components: main

Types: deb
# https://archive.example.test/snapshot/debian/20250520T000000Z
URIs: https://mirror.example.test/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://mirror.example.test/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_is_the_debian_archive_of_the_hosts_deb822_sources(tmp_path: Path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list").write_text("deb https://cloud.example.test/apt cloud-sdk-bookworm main\n")
    done = mirror(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "https://mirror.example.test/debian"


def test_the_mirror_is_read_from_one_line_sources_too(tmp_path: Path):
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example.test/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] https://cloud.example.test/apt cloud-sdk-bookworm main\n"
        "deb http://security.example.test/debian-security bookworm-security main\n"
        "deb [ arch=amd64,arm64 ] http://one.example.test/debian trixie main non-free-firmware\n"
    )
    assert mirror(tmp_path).stdout.strip() == "http://one.example.test/debian"


def test_debian_mirror_overrides_the_host_and_no_source_is_an_error(tmp_path: Path):
    snapshot = "http://snapshot.example.test/archive/debian/20250520T000000Z"
    assert mirror(tmp_path, {"DEBIAN_MIRROR": snapshot + "/"}).stdout.strip() == snapshot
    done = mirror(tmp_path)
    assert done.returncode != 0 and "DEBIAN_MIRROR" in done.stderr


def boot_backend(tmp_path: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "COMPTOIR_BOOT_DIR": str(tmp_path / "boot"),
        "COMPTOIR_RAUC_STATE": str(tmp_path / "rauc" / "boot-state"),
        "COMPTOIR_CMDLINE": str(tmp_path / "cmdline"),
    }
    done = subprocess.run(
        [str(HERE / "rauc" / "rauc-rpi-boot"), *args], capture_output=True, text=True, timeout=10, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_rauc_boot_backend_switches_os_prefix_and_keeps_slot_states(tmp_path: Path):
    (tmp_path / "boot").mkdir()
    shutil.copy(HERE / "boot" / "config.txt", tmp_path / "boot" / "config.txt")
    (tmp_path / "cmdline").write_text("console=tty0 root=PARTLABEL=rootfs-a ro rauc.slot=A quiet\n")
    assert boot_backend(tmp_path, "get-primary") == "A"
    assert boot_backend(tmp_path, "get-current") == "A"
    boot_backend(tmp_path, "set-primary", "B")  # no rootfs-b block device here: only os_prefix moves
    assert boot_backend(tmp_path, "get-primary") == "B"
    assert "os_prefix=b/" in (tmp_path / "boot" / "config.txt").read_text()
    assert boot_backend(tmp_path, "get-state", "B") == "good"
    boot_backend(tmp_path, "set-state", "B", "bad")
    boot_backend(tmp_path, "set-state", "A", "good")
    assert (boot_backend(tmp_path, "get-state", "B"), boot_backend(tmp_path, "get-state", "A")) == ("bad", "good")
    boot_backend(tmp_path, "set-primary", "A")
    assert boot_backend(tmp_path, "get-primary") == "A"


def test_boot_files_and_rauc_slots_name_the_same_partitions():
    recipe = (HERE / "mmdebstrap-image.sh").read_text()
    names = re.findall(r"^name=([\w-]+),", recipe, re.MULTILINE)
    assert names == ["boot", "rootfs-a", "rootfs-b", "data"]
    conf = configparser.ConfigParser()
    conf.read(HERE / "rauc" / "system.conf")
    slots = {conf[s]["bootname"]: conf[s]["device"] for s in conf.sections() if s.startswith("slot.rootfs.")}
    assert slots == {"A": "/dev/disk/by-partlabel/rootfs-a", "B": "/dev/disk/by-partlabel/rootfs-b"}
    assert conf["system"]["bootloader"] == "custom"
    assert conf["handlers"]["bootloader-custom-backend"] == "/usr/lib/comptoir/rauc-rpi-boot"
    cmdline = (HERE / "boot" / "cmdline.txt").read_text().split()
    assert "root=PARTLABEL=rootfs-@SLOT@" in cmdline and "ro" in cmdline and "rauc.slot=@BOOTNAME@" in cmdline
    assert "os_prefix=a/" in (HERE / "boot" / "config.txt").read_text().splitlines()
    fstab = (HERE / "rootfs/etc/fstab").read_text()
    for label in ("boot", "data"):
        assert f"/dev/disk/by-partlabel/{label} " in fstab


def test_rauc_has_two_root_slots():
    conf = configparser.ConfigParser()
    conf.read(HERE / "rauc" / "system.conf")
    slots = [s for s in conf.sections() if s.startswith("slot.rootfs.")]
    assert len(slots) == 2 and {conf[s]["bootname"] for s in slots} == {"A", "B"}
    assert conf["system"]["compatible"] and conf["keyring"]["path"]


def test_root_is_read_only_and_data_has_its_partition():
    lines = [line.split() for line in (HERE / "rootfs/etc/fstab").read_text().splitlines() if line[:1] not in ("#", "")]
    mounts = {fields[1]: fields for fields in lines}
    assert mounts["/"][3].split(",")[0] == "ro"
    assert "rw" in mounts["/var/lib/comptoir"][3].split(",")
    assert {"/tmp", "/var/tmp", "/var/log"} <= {m for m, fields in mounts.items() if fields[2] == "tmpfs"}


BACK_OFFICE_UNITS = {"comptoir-backoffice.service"}
"""Units of the fleet's back office, which runs on the operator's servers, not on a box."""


def test_the_image_installs_every_unit_of_the_box_and_the_polkit_rule():
    recipe = (HERE / "mmdebstrap-image.sh").read_text()
    for unit in SYSTEMD.glob("comptoir-*"):
        if unit.name in BACK_OFFICE_UNITS:
            assert unit.name not in recipe, f"{unit.name} is the back office's, not the box's"
        else:
            assert unit.name in recipe, unit.name
    assert "50-comptoir.rules" in recipe and "pcscd" in recipe and "cage" in recipe
    assert re.search(r"useradd .*kiosk", recipe)


@pytest.mark.skipif(os.environ.get("COMPTOIR_IMAGE_TEST") != "1", reason="slow (minutes): COMPTOIR_IMAGE_TEST=1")
def test_the_app_starts_its_selftest_in_an_arm64_root_filesystem(tmp_path: Path):
    done = subprocess.run(
        [str(HERE / "rootfs-selftest.sh"), str(tmp_path / "work")], capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert results[-1]["ok"] and results[-1]["machine"] == "aarch64"
