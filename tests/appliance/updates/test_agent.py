"""The install state machine on a provisioned box: commit, roll-back on a failing health check,
abort before the switch, downgrade refusal, recovery of every interrupted state, stage events."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from appliance.store.migrations import MIGRATIONS
from appliance.store.outbox import pending
from appliance.updates.agent import UpdateRefused
from appliance.updates.compat import open_compatible
from appliance.updates.events import STREAM, MemoryStageReporter, OutboxStageReporter
from appliance.updates.journal import Journal
from appliance.updates.layout import Layout
from tests.appliance.updates.fakes import FakeRestarter, make_agent

NEW_SCHEMA = len(MIGRATIONS) + 1
"""The release under test adds one migration to the running one's."""


class FileSource:
    """An archive source reading already-built archives (the TUF one is tested in test_tuf.py)."""

    def __init__(self, releases: dict[str, Path]) -> None:
        self.releases = releases

    def fetch(self, version: str, dest_dir: Path) -> Path:
        return self.releases[version]


def selftest(layout: Layout, db: Path) -> dict[str, object]:
    """What the release ``current`` points to says about itself, run as the units would run it."""
    done = subprocess.run(
        [str(layout.current / "bin" / "comptoir-hook"), "selftest", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_install_switches_commits_and_runs_the_new_release(box: tuple[Layout, Path], releases: dict[str, Path]):
    layout, db = box
    restarter = FakeRestarter(layout)
    events = MemoryStageReporter()
    agent = make_agent(layout, db, restarter, source=FileSource(releases), reporter=events)
    outcome = agent.install("0.2.0")
    assert outcome.result == "committed", outcome
    assert (layout.current_version(), layout.good_version()) == ("0.2.0", "0.2.0")
    assert events.stages() == [
        "started", "downloaded", "installed", "migrated", "verified", "switching", "switched", "restarted",
        "healthy", "committed",
    ]  # fmt: skip
    assert events.events[3].detail == {"schema": NEW_SCHEMA}
    assert restarter.restarts == [("0.2.0", ("comptoir-kiosk.service", "comptoir-sync.service"))]
    result = selftest(layout, db)
    assert result["ok"] and result["version"] == "0.2.0" and result["schema"] == NEW_SCHEMA
    assert str(result["appliance"]).startswith(str(layout.releases / "0.2.0"))
    # a third release: the oldest one is removed, the previous one is kept for a roll-back
    assert agent.install("0.3.0").result == "committed"
    assert layout.installed_versions() == ["0.2.0", "0.3.0"]


def test_a_failing_health_check_rolls_back_to_the_previous_release(box: tuple[Layout, Path], releases: dict[str, Path]):
    layout, db = box
    restarter = FakeRestarter(layout, failing=("devices",), silent=("sync",))
    events = MemoryStageReporter()
    agent = make_agent(layout, db, restarter, source=FileSource(releases), reporter=events)
    outcome = agent.install("0.2.0")
    assert outcome.result == "rolled_back"
    assert "no report from sync" in outcome.reason and "unhealthy: devices" in outcome.reason
    assert (layout.current_version(), layout.good_version()) == ("0.1.0", "0.1.0")
    assert [v for v, _ in restarter.restarts] == ["0.2.0", "0.1.0"]
    assert events.stages()[-2:] == ["rollback", "rolled_back"]
    # the previous release runs on the migrated database (expand-only rule)
    result = selftest(layout, db)
    assert result["ok"] and result["version"] == "0.1.0" and result["schema"] == NEW_SCHEMA, result


def test_a_stale_report_of_the_old_release_does_not_count(box: tuple[Layout, Path], releases: dict[str, Path]):
    layout, db = box
    restarter = FakeRestarter(layout, silent=("kiosk",))
    from appliance.updates.health import report

    report(layout.health, "kiosk", version="0.1.0", ok=True)  # the old kiosk, still reporting
    outcome = make_agent(layout, db, restarter, source=FileSource(releases)).install("0.2.0")
    assert outcome.result == "rolled_back" and "no report from kiosk" in outcome.reason


def test_a_release_failing_its_selftest_is_aborted_before_the_switch(
    box: tuple[Layout, Path], releases: dict[str, Path]
):
    layout, db = box
    restarter = FakeRestarter(layout)
    outcome = make_agent(layout, db, restarter, source=FileSource(releases)).install("0.2.1")
    assert outcome.result == "aborted" and "broken on purpose" in outcome.reason
    assert layout.current_version() == "0.1.0" and restarter.restarts == []
    assert layout.installed_versions() == ["0.1.0"]


def test_a_downgrade_is_refused(box: tuple[Layout, Path], releases: dict[str, Path]):
    layout, db = box
    agent = make_agent(layout, db, FakeRestarter(layout), source=FileSource(releases))
    assert agent.install("0.2.0").result == "committed"
    outcome = agent.install("0.1.0")
    assert outcome.result == "refused" and "downgrade" in outcome.reason
    assert agent.install("0.2.0").result == "noop"


def test_an_archive_that_is_not_the_offered_version_is_aborted(box: tuple[Layout, Path], releases: dict[str, Path]):
    layout, db = box
    source = FileSource({"0.3.0": releases["0.2.0"]})
    outcome = make_agent(layout, db, FakeRestarter(layout), source=source).install("0.3.0")
    assert outcome.result == "aborted" and "holds release 0.2.0" in outcome.reason


def test_no_install_without_a_provisioned_release(tmp_path: Path, releases: dict[str, Path]):
    layout = Layout.under(tmp_path)
    with pytest.raises(UpdateRefused, match="provision"):
        make_agent(layout, tmp_path / "db", FakeRestarter(layout), source=FileSource(releases)).install("0.2.0")


@pytest.mark.parametrize(
    ("last_event", "expected", "current"),
    [
        ("migrated", "aborted", "0.1.0"),
        ("switched", "rolled_back", "0.1.0"),
        ("rollback", "rolled_back", "0.1.0"),
        ("healthy", "committed", "0.2.0"),
    ],
)
def test_recovery_acts_on_the_last_journal_event(
    box: tuple[Layout, Path], releases: dict[str, Path], last_event: str, expected: str, current: str
):
    layout, db = box
    agent = make_agent(layout, db, FakeRestarter(layout), source=FileSource(releases))
    from appliance.updates.installer import install_archive

    install_archive(releases["0.2.0"], layout, python=agent.config.python)
    journal = Journal(layout.journal)
    for event in ("started", "downloaded", "installed", "migrated", "verified", "switching", "switched"):
        journal.append("t1", event, **{"from": "0.1.0", "to": "0.2.0"})
        if event == "switched":
            layout.switch_current("0.2.0")
        if event == last_event:
            break
    else:
        if last_event in ("rollback", "healthy"):
            journal.append("t1", last_event, **{"from": "0.1.0", "to": "0.2.0"})
    with layout.journal.open("ab") as f:
        f.write(b'{"seq": 99, "txn": "t1", "ev')  # the power went out mid-line: ignored
    outcome = agent.recover()
    assert outcome is not None and outcome.result == expected
    assert layout.current_version() == current == layout.good_version()
    assert agent.recover() is None  # idempotent: nothing left to do


def test_stage_events_go_to_the_outbox_once_per_stage(box: tuple[Layout, Path], releases: dict[str, Path]):
    layout, db = box
    reporter = OutboxStageReporter(db)
    agent = make_agent(layout, db, FakeRestarter(layout), source=FileSource(releases), reporter=reporter)
    outcome = agent.install("0.2.0")
    handle = open_compatible(db)
    try:
        rows = handle.conn.execute("SELECT key, payload FROM outbox WHERE stream = ? ORDER BY id", (STREAM,)).fetchall()
        head = pending(handle, STREAM)
    finally:
        handle.close()
    keys = [k for k, _ in rows]
    assert keys[0] == f"update:{outcome.txn}:started" and keys[-1] == f"update:{outcome.txn}:committed"
    last = json.loads(rows[-1][1])
    assert last["type"] == "update.stage" and last["box"] == "box-test"
    assert (last["from"], last["to"], last["stage"], last["ok"]) == ("0.1.0", "0.2.0", "committed", True)
    assert len(head) == 1  # one stream, delivered in order by the sync worker
