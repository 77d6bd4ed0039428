"""The update hooks of a release, run by the agent as ``releases/<version>/bin/comptoir-hook``.

They run the code *of that release* (its ``site/`` comes first on the path), so the new release
migrates the database with its own migrations and checks itself before anything is switched:

- ``migrate --db FILE``: bring the schema up to this release (:func:`~appliance.updates.compat.open_compatible`);
- ``selftest [--db FILE]``: import the app (the whole CLI, the code parsers, the store), read one code,
  check the database schema is usable by this release without writing to it; prints
  ``{"ok": true, "version": …, "schema": …, "machine": …, "python": …, "appliance": <path>}``;
  the image build runs it inside the arm64 root filesystem;
- ``recover [--root DIR]``: boot-time recovery of an interrupted install (``comptoir-update-recover.service``
  runs it from the ``good`` release);
- ``version``.

Exit status 0 on success, 1 on failure (a JSON object with ``ok: false`` and ``error`` is still printed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.updates.manifest import MANIFEST_NAME, ReleaseManifest


def release_dir() -> Path:
    """The release this code was installed into (``releases/<version>``), from this file's place."""
    return Path(__file__).resolve().parents[3]


def release_version() -> str:
    """This release's version: its ``release.json``, or the installed distribution's version."""
    manifest = release_dir() / MANIFEST_NAME
    if manifest.is_file():
        return ReleaseManifest.loads(manifest.read_bytes()).version
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("comptoir")
    except PackageNotFoundError:
        return "0+unknown"


def migrate(db_path: Path) -> dict[str, Any]:
    from appliance.store.database import schema_version
    from appliance.updates.compat import open_compatible

    db = open_compatible(db_path)
    try:
        return {"ok": True, "version": release_version(), "schema": schema_version(db)}
    finally:
        db.close()


def selftest(db_path: Path | None) -> dict[str, Any]:
    import appliance
    from appliance.cli import build_parser
    from appliance.codes.config import CodeConfig
    from appliance.codes.reader import CodeReader
    from appliance.codes.trust import TrustList
    from appliance.store.migrations import MIGRATIONS

    build_parser()
    decoded = CodeReader(TrustList(), CodeConfig()).read(b"\x1d010340093000143917251231100AB12\x1d21XYZ123")
    result: dict[str, Any] = {
        "ok": True,
        "version": release_version(),
        "code_schema": MIGRATIONS[-1].version,
        "decoded": str(decoded.kind),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "appliance": str(Path(appliance.__file__).resolve().parent),
    }
    if db_path is not None:
        import sqlite_utils

        from appliance.store.database import connect
        from appliance.updates.compat import schema_state

        conn = connect(db_path, readonly=True)
        try:
            state = schema_state(sqlite_utils.Database(conn), MIGRATIONS)
        finally:
            conn.close()
        result["schema"] = state.file_version
        if state.file_version < state.code_version or not state.readable:
            result.update(ok=False, error=f"database schema {state.file_version} not usable by this release")
    return result


def recover(root: Path | None, db_path: Path | None) -> dict[str, Any]:
    from appliance.updates.agent import UpdateAgent, UpdateConfig
    from appliance.updates.layout import Layout

    layout = Layout.under(root) if root is not None else Layout.default()
    config = UpdateConfig(layout=layout, db_path=db_path or Path("/var/lib/comptoir/data/comptoir.db"))
    agent = UpdateAgent(config, source=None, restarter=_NoRestart())
    outcome = agent.recover(restart=False)
    return {"ok": True, "recovered": None if outcome is None else outcome.to_json()}


class _NoRestart:
    """At boot the units start after recovery (``Before=``): nothing to restart."""

    def restart(self, units: Sequence[str]) -> None:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="comptoir-hook", description="Update hooks of this comptoir release.")
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("migrate")
    m.add_argument("--db", type=Path, required=True)
    s = commands.add_parser("selftest")
    s.add_argument("--db", type=Path)
    r = commands.add_parser("recover")
    r.add_argument("--root", type=Path, help="a box layout below this directory (default: the real paths)")
    r.add_argument("--db", type=Path)
    commands.add_parser("version")
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            result = migrate(args.db)
        elif args.command == "selftest":
            result = selftest(args.db)
        elif args.command == "recover":
            result = recover(args.root, args.db)
        else:
            result = {"ok": True, "version": release_version()}
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, sort_keys=True))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
