"""The sync benchmark measures what it claims: behaviour only, never speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.sync import Report, parse_args, print_report, run_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str]:
    args = parse_args(["--quick", "--messages", "300", "--devices", "12", "--workers", "2", "--step-seconds", "1.5"])
    args.dir = tmp_path_factory.mktemp("bench")
    report = run_benchmark(args)
    lines: list[str] = []
    print_report(report, args, out=lines.append)
    return report, "\n".join(lines)


def test_outbox_and_raw_paho_rows_on_the_same_broker(quick: tuple[Report, str]) -> None:
    report, text = quick
    assert [r.name for r in report.rates] == [
        "raw paho QoS 1 (inflight 200)",
        "outbox -> MQTT (window 200)",
        "raw paho QoS 1 (inflight 20)",
        "outbox -> MQTT (window 500)",
    ]
    assert all(r.messages == 300 and r.seconds > 0 for r in report.rates)
    assert "× raw" in text


def test_drain_reaches_the_back_office_once(quick: tuple[Report, str]) -> None:
    report, _ = quick
    assert report.drain.name == "drain 300 queued events to the back office (stored 300)"


def test_fleet_steps_lose_nothing_and_measure_latency_and_cpu(quick: tuple[Report, str]) -> None:
    report, text = quick
    fleet = report.fleet
    assert fleet.devices == 12 and len(fleet.steps) == 2
    for step in fleet.steps:
        assert step.sent > 0 and step.received == step.sent
        assert len(step.latencies_ms) == step.sent and step.broker_cpu_pct >= 0
    assert [s.compression for s in fleet.steps] == [5.0, 20.0]
    assert "boxes at one message per 10 s" in text


def test_script_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sync.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--devices" in done.stdout
