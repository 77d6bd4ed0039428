"""``comptoir sync`` / ``python -m sync``: configuration errors are clear, ``--once`` does one pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandbox.backoffice.pki import Pki
from sync.service import ConfigError, load_config
from tests.sync.harness import enqueue_events, make_device_db, write_sync_config

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_configuration_is_a_usage_error(tmp_path: Path) -> None:
    done = _run("--config", str(tmp_path / "nope.toml"))
    assert done.returncode == 2 and "no configuration at" in done.stderr


def test_database_comes_from_the_environment_when_the_file_does_not_say(tmp_path: Path) -> None:
    config = tmp_path / "sync.toml"
    config.write_text("[sync]\nwindow = 10\n", encoding="utf-8")
    os.environ.pop("COMPTOIR_DB", None)
    try:
        load_config(config)
    except ConfigError as exc:
        assert "COMPTOIR_DB" in str(exc)
    else:
        raise AssertionError("a configuration without a database must be refused")


def test_once_with_the_broker_down_keeps_everything(tmp_path: Path, pki: Pki) -> None:
    db, key = make_device_db(tmp_path / "box")
    enqueue_events(db, 5)
    config = write_sync_config(tmp_path / "s.toml", db=db, key=key, pki=pki, broker_port=1)
    done = _run("--config", str(config), "--once", "--connect-timeout", "1", "--log-level", "ERROR")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"published": 0, "delivered": 0, "deferred": 0}
