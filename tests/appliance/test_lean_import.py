"""Libraries imported without the optional packages they would load only because those are installed:
sqlite-utils without numpy, httpx without its command line's pygments."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import appliance.store.database
import sqlite_utils.db
before = "numpy" in sys.modules
import numpy  # the camera driver still can
print(before, sqlite_utils.db.np is None, numpy.zeros(2).sum())
"""

ALREADY = """
import numpy
import appliance.store.database
import sqlite_utils.db
print(sqlite_utils.db.np is numpy)
"""


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_opening_the_store_does_not_load_numpy_which_stays_importable() -> None:
    assert _run(PROBE) == "False True 0.0"


def test_a_process_that_already_has_numpy_keeps_sqlite_utils_behaviour() -> None:
    assert _run(ALREADY) == "True"


HTTPX = """
import sys
import sync.teleservices_http
import httpx
print("pygments" in sys.modules, httpx.Client is not None)
"""


def test_the_network_adapters_load_httpx_without_its_command_line() -> None:
    assert _run(HTTPX) == "False True"
