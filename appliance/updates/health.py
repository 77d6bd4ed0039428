"""The health-check contract: each component of a running release reports, the agent judges.

A component writes ``<run>/health/<component>.json`` (atomically: temporary file then rename) with
the release version it runs, whether it is healthy, when, and a few details::

    {"component": "kiosk", "version": "0.2.0", "ok": true, "at": 1718000000.0, "pid": 1234,
     "detail": {"frames": 120}}

Who reports what (each is one call to :func:`report` in that component, the owner's work):

- ``kiosk``: the Kivy app has drawn frames (``ok`` once ``frames`` > 0 after start-up); it also
  feeds the systemd watchdog (``WATCHDOG=1``) from the same frame callback;
- ``database``: the store opened (migrations done or schema readable) and a write transaction
  committed;
- ``devices``: the configured scanner(s) and the PC/SC reader were found (``detail`` names them);
- ``sync``: the MQTT session to the back office is up (CONNACK received).

The agent (:func:`wait_healthy`) waits until every required component has reported ``ok`` for the
new version *after* the restart, or a deadline passes; a report of the old version or from before the
restart never counts. ``/run`` is a tmpfs, so reports vanish at reboot.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPONENTS: tuple[str, ...] = ("kiosk", "database", "devices", "sync")


@dataclass(frozen=True, slots=True)
class HealthReport:
    component: str
    version: str
    ok: bool
    at: float
    pid: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "version": self.version,
            "ok": self.ok,
            "at": self.at,
            "pid": self.pid,
            "detail": self.detail,
        }


def report(
    health_dir: Path,
    component: str,
    *,
    version: str,
    ok: bool,
    detail: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> HealthReport:
    """Write (replace) ``component``'s report. Cheap enough to call on every state change."""
    if not component.isidentifier():
        raise ValueError(f"bad component name {component!r}")
    entry = HealthReport(component, version, ok, time.time() if now is None else now, os.getpid(), dict(detail or {}))
    health_dir.mkdir(parents=True, exist_ok=True)
    tmp = health_dir / f".{component}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(entry.to_json(), sort_keys=True))
    os.replace(tmp, health_dir / f"{component}.json")
    return entry


def read_reports(health_dir: Path) -> dict[str, HealthReport]:
    """The reports present (an unreadable file counts as absent: its writer will replace it)."""
    found: dict[str, HealthReport] = {}
    if not health_dir.is_dir():
        return found
    for path in health_dir.glob("*.json"):
        try:
            raw = json.loads(path.read_text())
            entry = HealthReport(
                str(raw["component"]),
                str(raw["version"]),
                bool(raw["ok"]),
                float(raw["at"]),
                int(raw.get("pid", 0)),
                dict(raw.get("detail", {})),
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found[entry.component] = entry
    return found


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    ok: bool
    waited: float
    missing: tuple[str, ...]
    failing: tuple[str, ...]
    reports: dict[str, HealthReport]

    def reason(self) -> str:
        parts = []
        if self.missing:
            parts.append("no report from " + ", ".join(self.missing))
        if self.failing:
            parts.append("unhealthy: " + ", ".join(self.failing))
        return "; ".join(parts) or "healthy"

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "waited": round(self.waited, 3),
            "missing": list(self.missing),
            "failing": list(self.failing),
        }


def judge(reports: Mapping[str, HealthReport], *, version: str, since: float, required: Iterable[str]) -> HealthVerdict:
    """The verdict on one set of reports (pure)."""
    missing: list[str] = []
    failing: list[str] = []
    for component in required:
        entry = reports.get(component)
        if entry is None or entry.version != version or entry.at < since:
            missing.append(component)
        elif not entry.ok:
            failing.append(component)
    return HealthVerdict(not missing and not failing, 0.0, tuple(missing), tuple(failing), dict(reports))


def wait_healthy(
    health_dir: Path,
    *,
    version: str,
    since: float,
    deadline: float,
    required: Iterable[str] = COMPONENTS,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll: float = 0.1,
) -> HealthVerdict:
    """Poll the reports until all ``required`` components are healthy for ``version`` or ``deadline``
    seconds have passed. A component that reports ``ok: false`` is not final (it may recover before
    the deadline); the verdict is the last one seen."""
    needed = tuple(required)
    start = monotonic()
    while True:
        verdict = judge(read_reports(health_dir), version=version, since=since, required=needed)
        waited = monotonic() - start
        if verdict.ok or waited >= deadline:
            return HealthVerdict(verdict.ok, waited, verdict.missing, verdict.failing, verdict.reports)
        sleep(min(poll, max(0.0, deadline - waited)))
