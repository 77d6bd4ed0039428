"""Test releases built from this very tree: the real ``appliance`` code in a wheel, with a version of
our choosing and, for the "new" releases, one more migration (additive, so the previous release runs
on it) — so installs, migrations, self-tests and roll-backs run real release code in subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

from appliance.store.migrations import MIGRATIONS
from appliance.updates.archive import build_archive, build_wheel, project_files

ROOT = Path(__file__).resolve().parents[3]

EXTRA_MIGRATION = '''

MIGRATIONS.append(
    Migration(
        len(MIGRATIONS) + 1,
        "update test: a new table and a nullable column",
        """
        CREATE TABLE update_probe (id INTEGER PRIMARY KEY, note TEXT NOT NULL DEFAULT '');
        ALTER TABLE operators ADD COLUMN nickname TEXT;
        """,
    )
)
'''

BROKEN_SELFTEST = """

def selftest(db_path):  # noqa: ANN001, ANN201 - a broken release, for the tests
    raise RuntimeError("this release is broken on purpose")
"""


def build_release(out: Path, version: str, *, extra_migration: bool = False, broken: bool = False) -> Path:
    """``comptoir-<version>.tar`` of this tree (pure-Python comptoir wheel only: dependencies come
    from the test virtualenv, whose site-packages the launcher's interpreter has)."""
    files = project_files(ROOT)
    if extra_migration:
        files["appliance/store/migrations.py"] += EXTRA_MIGRATION.encode()
    if broken:
        files["appliance/updates/hooks.py"] = files["appliance/updates/hooks.py"].replace(
            b'\nif __name__ == "__main__":', BROKEN_SELFTEST.encode() + b'\nif __name__ == "__main__":'
        )
    wheel = build_wheel(out / f"wheels-{version}", name="comptoir", version=version, files=files)
    schema = MIGRATIONS[-1].version + (1 if extra_migration else 0)
    archive, _ = build_archive(out, version=version, wheels=[wheel], schema_version=schema)
    return archive


PYTHON = sys.executable
