"""Kivy in the test process (view models) stays windowless; windowed runs go to a subprocess each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="comptoir-kivy-tests-"))

REPO = Path(__file__).resolve().parents[2]


def start_windowed(mode: str, out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``tests/ui/runner.py MODE`` offscreen in its own process."""
    environment = {
        **os.environ,
        "SDL_VIDEODRIVER": "offscreen",
        "KIVY_HOME": str(out / "kivy-home"),
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ui.runner", mode, str(out), *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_windowed(process: subprocess.Popen[str], out: Path, timeout: float = 60.0) -> Any:
    """Wait for a runner (killed past ``timeout``); its result.json, or a failure with its stderr."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"runner timed out after {timeout} s:\n{stderr[-4000:]}") from None
    result_file = out / "result.json"
    if process.returncode != 0 or not result_file.exists():
        raise AssertionError(f"runner failed ({process.returncode}):\n{stderr[-4000:]}")
    return json.loads(result_file.read_text(encoding="utf-8"))


def run_windowed(mode: str, out: Path, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> Any:
    """Run one windowed scenario to its end."""
    return finish_windowed(start_windowed(mode, out, *args, env=env), out, timeout)
