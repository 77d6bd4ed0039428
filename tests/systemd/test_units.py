"""Every unit in systemd/ passes ``systemd-analyze verify`` and has an exposure of 2.0 or below in
``systemd-analyze security --offline=true``; the kiosk unit is Type=notify with a watchdog and no
PrivateUsers (it talks to pcscd, whose polkit check needs the real uid)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = sorted(p for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer"))
SERVICES = [p for p in UNITS if p.suffix == ".service"]
POLKIT = UNITS_DIR.parent / "image-build" / "rootfs" / "etc" / "polkit-1" / "rules.d" / "50-comptoir.rules"
MAX_EXPOSURE = 2.0

ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
pytestmark = pytest.mark.skipif(
    not Path(ANALYZE).exists(), reason="systemd-analyze not installed (apt-get install systemd)"
)


def directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the host's system units, stub executables at the units' ExecStart paths, and ours."""
    root = tmp_path_factory.mktemp("root")
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
    for unit in UNITS:
        for command in directives(unit).get("ExecStart", []):
            exe = root / command.split()[0].lstrip("-@+!").lstrip("/")
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    return root


def test_the_units_are_all_there():
    names = {p.name for p in UNITS}
    assert {
        "comptoir-kiosk.service", "comptoir-sync.service", "comptoir-update.service", "comptoir-update.timer",
        "comptoir-update-recover.service", "comptoir-backup.service", "comptoir-backup.timer",
        "comptoir-backoffice.service",
    } <= names  # fmt: skip


def test_systemd_analyze_verify_is_clean(image_root: Path):
    paths = [str(image_root / "etc/systemd/system" / u.name) for u in UNITS]
    done = subprocess.run(
        [ANALYZE, "verify", f"--root={image_root}", "--man=false", *paths],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stdout + done.stderr


@pytest.mark.parametrize("unit", SERVICES, ids=[u.name for u in SERVICES])
def test_exposure_is_at_most_two(unit: Path):
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("unit", SERVICES, ids=[u.name for u in SERVICES])
def test_each_exposure_exception_is_explained_in_the_unit(unit: Path):
    text = unit.read_text()
    d = directives(unit)
    if "PrivateUsers" not in d:
        assert re.search(r"#.*no PrivateUsers", text), f"{unit.name}: PrivateUsers off without an explanation"
    if "PrivateNetwork" not in d:
        assert re.search(r"#.*(PrivateNetwork|IPAddressAllow|IP allow list)", text), unit.name
    if "MemoryDenyWriteExecute" not in d:
        assert re.search(r"#.*MemoryDenyWriteExecute", text), unit.name


def test_the_kiosk_is_notify_with_a_watchdog_and_talks_to_pcscd_without_private_users():
    d = directives(UNITS_DIR / "comptoir-kiosk.service")
    assert d["Type"] == ["notify"] and d["WatchdogSec"] and d["Restart"] == ["always"]
    assert "PrivateUsers" not in d and "pcscd.socket" in " ".join(d["Wants"])
    rules = POLKIT.read_text()
    assert "org.debian.pcsc-lite.access_pcsc" in rules and 'subject.user == "kiosk"' in rules


def test_the_app_units_wait_for_boot_recovery_and_run_the_release_links():
    for name in ("comptoir-kiosk.service", "comptoir-sync.service", "comptoir-update.service"):
        d = directives(UNITS_DIR / name)
        assert "comptoir-update-recover.service" in " ".join(d["Requires"]), name
    recover = directives(UNITS_DIR / "comptoir-update-recover.service")
    assert recover["ExecStart"][0].startswith("/var/lib/comptoir/app/good/")
    assert directives(UNITS_DIR / "comptoir-kiosk.service")["ExecStart"][0].endswith("/app/current/bin/comptoir kiosk")


def test_the_back_office_unit_runs_the_shipped_command_on_its_configuration_file():
    from sync.backoffice.config import DEFAULT_CONFIG, DEFAULT_SQLITE

    d = directives(UNITS_DIR / "comptoir-backoffice.service")
    assert d["ExecStart"][0].endswith(f"/bin/comptoir backoffice --config {DEFAULT_CONFIG}")
    assert d["Restart"] == ["always"] and d["User"] == ["comptoir-backoffice"]
    assert d["StateDirectory"] == [DEFAULT_SQLITE.parent.name]
    assert d["ConfigurationDirectory"] == [DEFAULT_CONFIG.parent.name]
    assert (UNITS_DIR / "backoffice.toml.example").is_file()
