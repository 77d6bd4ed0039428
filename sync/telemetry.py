"""What the box tells its back office about itself: versions, disk, outbox, devices, last sync.

Counts and versions only. The outbox's ``last_error`` strings are written without patient data
(:func:`appliance.store.outbox.mark_failed`), and are only sent on a diagnostics command.
"""

from __future__ import annotations

import json
import platform
import shutil
import sqlite3
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.store.database import get_setting, schema_version

if TYPE_CHECKING:
    import sqlite_utils

DEVICES_SEEN_SETTING = "devices.seen"
"""``pharmacy`` setting where the kiosk writes the peripherals it has seen (JSON object: kind -> model
or count); the sync process only reports it."""


def comptoir_version() -> str:
    """The installed comptoir release (``0+unknown`` when running from a bare checkout)."""
    try:
        return metadata.version("comptoir")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def outbox_depth(db: sqlite_utils.Database) -> dict[str, int]:
    """Undelivered messages per stream."""
    return {
        str(stream): int(n)
        for stream, n in db.conn.execute(
            "SELECT stream, count(*) FROM outbox WHERE delivered_at IS NULL GROUP BY stream ORDER BY stream"
        )
    }


def last_sync(db: sqlite_utils.Database) -> float | None:
    """When the receiver last acknowledged a message (any stream): from the outbox itself, so it
    survives restarts of the sync process without state of its own."""
    row = db.conn.execute("SELECT max(delivered_at) FROM outbox").fetchone()
    return None if row is None or row[0] is None else float(row[0])


def collect(db: sqlite_utils.Database, *, data_dir: Path, now: float | None = None) -> dict[str, Any]:
    """One telemetry snapshot (JSON-ready)."""
    when = time.time() if now is None else now
    depth = outbox_depth(db)
    oldest = db.conn.execute("SELECT min(created_at) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
    failing = db.conn.execute(
        "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND last_error IS NOT NULL"
    ).fetchone()[0]
    try:
        usage = shutil.disk_usage(data_dir)
        disk: dict[str, int] = {"free_bytes": usage.free, "total_bytes": usage.total}
    except OSError:
        disk = {}
    raw_seen = get_setting(db, DEVICES_SEEN_SETTING)
    try:
        seen = json.loads(raw_seen) if raw_seen else {}
    except ValueError:
        seen = {}
    return {
        "at": when,
        "versions": {
            "comptoir": comptoir_version(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "schema": schema_version(db),
        },
        "disk": disk,
        "outbox": {
            "depth": sum(depth.values()),
            "streams": depth,
            "oldest_age_s": None if oldest is None else round(max(0.0, when - float(oldest)), 3),
            "failing": int(failing),
        },
        "devices_seen": seen if isinstance(seen, dict) else {},
        "last_sync": last_sync(db),
    }


def diagnostics(db: sqlite_utils.Database, *, data_dir: Path, now: float | None = None) -> dict[str, Any]:
    """Telemetry plus what support needs to see why a stream is stuck (its head's error and attempts)."""
    snapshot = collect(db, data_dir=data_dir, now=now)
    heads = db.conn.execute(
        "SELECT stream, key, attempts, last_error, next_attempt_at FROM outbox WHERE id IN ("
        " SELECT min(id) FROM outbox WHERE delivered_at IS NULL GROUP BY stream) ORDER BY stream"
    ).fetchall()
    snapshot["heads"] = [
        {"stream": s, "key": k, "attempts": a, "last_error": e, "next_attempt_at": n} for s, k, a, e, n in heads
    ]
    return snapshot
