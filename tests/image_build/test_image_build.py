"""The image recipe: quick consistency checks always; the arm64 root filesystem self-test (debootstrap +
qemu-user, about 2 minutes with a cached base, 6 without) only when ``COMPTOIR_IMAGE_TEST=1``."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "image-build"
SYSTEMD = HERE.parent / "systemd"


@pytest.mark.parametrize("script", ["rootfs-selftest.sh", "mmdebstrap-image.sh"])
def test_scripts_parse_and_are_executable(script: str):
    path = HERE / script
    assert os.access(path, os.X_OK)
    assert subprocess.run(["/bin/bash", "-n", str(path)], capture_output=True, timeout=10).returncode == 0


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


def test_the_image_installs_every_unit_and_the_polkit_rule():
    recipe = (HERE / "mmdebstrap-image.sh").read_text()
    for unit in SYSTEMD.glob("comptoir-*"):
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
