"""SIGKILL at every step of an install (and of a roll-back), then boot-time recovery: a good release
runs afterwards, every time — the new one if the install had committed, the previous one otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from appliance.updates.journal import Journal
from appliance.updates.layout import Layout
from tests.appliance.updates.fakes import FakeRestarter, make_agent
from tests.appliance.updates.releases import ROOT
from tests.appliance.updates.test_agent import selftest

WORKER = [sys.executable, "-m", "tests.appliance.updates.update_worker"]


def run_worker(root: Path, archive: Path, version: str, *, kill_at: str | None, fail_health: bool = False) -> int:
    args = [*WORKER, "--root", str(root), "--db", str(root / "comptoir.db"), "--archive", str(archive)]
    args += ["--version", version, "--log", str(root / "steps.log")]
    if kill_at:
        args += ["--kill-at", kill_at]
    if fail_health:
        args.append("--fail-health")
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode


AROUND_THE_SWITCH = {"verified", "switching", "current.link_created", "current.renamed", "switched", "restarted"}


def boot(root: Path, *, full: bool = True) -> tuple[str | None, dict[str, object]]:
    """What a box does at power-on: recovery from the ``good`` release (as the unit runs it), then the
    kiosk starts from ``current``. Returns ``current`` and what its release says of itself: the full
    self-test (the whole app imported, the database schema usable) when ``full``, else its version
    and a check that every file of its ``site/`` is there (cheaper: the sweep has many points)."""
    layout = Layout.under(root)
    hook = layout.good / "bin" / "comptoir-hook"
    done = subprocess.run([str(hook), "recover", "--root", str(root)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    if full:
        return layout.current_version(), selftest(layout, root / "comptoir.db")
    done = subprocess.run([str(layout.current / "bin" / "comptoir-hook"), "version"], capture_output=True, text=True)
    files = sorted(p.relative_to(layout.current.resolve()).as_posix() for p in layout.current.resolve().rglob("*"))
    reference = layout.releases.parent.parent / "reference" / f"{layout.current_version()}.files"
    complete = not reference.exists() or reference.read_text().split() == [f for f in files if "__pycache__" not in f]
    result: dict[str, object] = json.loads(done.stdout)
    result["ok"] = bool(result["ok"]) and complete
    return layout.current_version(), result


@pytest.mark.parametrize("fail_health", [False, True], ids=["install", "rollback"])
def test_sigkill_at_every_step_leaves_a_good_release_running(
    tmp_path: Path, provisioned_template: Path, releases: dict[str, Path], fail_health: bool
):
    dry = tmp_path / "dry"
    shutil.copytree(provisioned_template, dry, symlinks=True)
    run_worker(dry, releases["0.2.0"], "0.2.0", kill_at=None, fail_health=fail_health)
    references = tmp_path / "reference"
    references.mkdir()
    for version in ("0.1.0", "0.2.0"):
        release = dry / "app" / "releases" / version
        if release.is_dir():
            names = sorted(p.relative_to(release).as_posix() for p in release.rglob("*"))
            (references / f"{version}.files").write_text("\n".join(n for n in names if "__pycache__" not in n))
    steps = [s for s in (dry / "steps.log").read_text().splitlines() if s]
    assert "current.renamed" in steps and ("committed" in steps or "rolled_back" in steps)
    final = steps[-1]
    if fail_health:  # the steps up to the restart are those of the install sweep: only the roll-back's are new
        steps = steps[steps.index("restarted") :]

    def one(index_step: tuple[int, str]) -> tuple[str, str | None, dict[str, object], str]:
        index, step = index_step
        root = tmp_path / f"kill-{index:02d}"
        shutil.copytree(provisioned_template, root, symlinks=True)
        status = run_worker(root, releases["0.2.0"], "0.2.0", kill_at=step, fail_health=fail_health)
        assert status == -9, f"worker not killed at {step} (status {status})"
        (root / "reference").symlink_to(references)
        current, result = boot(root, full=step in AROUND_THE_SWITCH or fail_health)
        last = Journal(Layout.under(root).journal).entries()[-1].event
        return step, current, result, last

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(one, enumerate(steps)))
    assert len(outcomes) == len(steps) >= (5 if fail_health else 15)
    for step, current, result, last in outcomes:
        committed = not fail_health and step in ("healthy", "good.link_created", "good.renamed", final)
        expected = "0.2.0" if committed else "0.1.0"
        assert current == expected, f"killed at {step}: current is {current}"
        assert result["ok"] and result["version"] == expected, f"killed at {step}: {result}"
        assert last in ("committed", "rolled_back", "aborted"), f"killed at {step}: journal ends with {last}"


def test_after_a_power_cut_rollback_the_box_updates_again(
    tmp_path: Path, provisioned_template: Path, releases: dict[str, Path]
):
    root = tmp_path / "box"
    shutil.copytree(provisioned_template, root, symlinks=True)
    assert run_worker(root, releases["0.2.0"], "0.2.0", kill_at="restarted") == -9
    assert boot(root)[0] == "0.1.0"
    layout = Layout.under(root)
    outcome = make_agent(layout, root / "comptoir.db", FakeRestarter(layout), source=None).install(
        "0.2.0", archive=releases["0.2.0"]
    )
    assert outcome.result == "committed" and layout.current_version() == "0.2.0"
