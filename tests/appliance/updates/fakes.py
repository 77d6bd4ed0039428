"""Test doubles shared by the tests and the crash worker (no pytest import: the worker starts fast)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from appliance.updates.agent import UpdateAgent, UpdateConfig
from appliance.updates.health import COMPONENTS, report
from appliance.updates.layout import Layout
from tests.appliance.updates.releases import PYTHON


class FakeRestarter:
    """Stands in for systemd in the tests: a "restart" makes the components of the release that
    ``current`` now points to write their health reports — all healthy, or with ``failing``
    components unhealthy, or ``silent`` ones never reporting."""

    def __init__(self, layout: Layout, *, failing: tuple[str, ...] = (), silent: tuple[str, ...] = ()) -> None:
        self.layout = layout
        self.failing = failing
        self.silent = silent
        self.restarts: list[tuple[str | None, tuple[str, ...]]] = []

    def restart(self, units: Sequence[str]) -> None:
        version = self.layout.current_version()
        self.restarts.append((version, tuple(units)))
        if version is None:
            raise RuntimeError("nothing to restart: no current release")
        for component in COMPONENTS:
            if component not in self.silent:
                report(self.layout.health, component, version=version, ok=component not in self.failing)


def make_agent(
    layout: Layout, db: Path, restarter: object, *, health_deadline: float = 1.0, **kwargs: object
) -> UpdateAgent:
    config = UpdateConfig(layout=layout, db_path=db, box_id="box-test", health_deadline=health_deadline, python=PYTHON)
    return UpdateAgent(config, restarter=restarter, **kwargs)  # type: ignore[arg-type]
