"""The back-office benchmark measures what it claims: behaviour only, never speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.backoffice import Report, parse_args, print_report, run_benchmark
from sandbox.backoffice.postgres import PostgresUnavailable, bindir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str]:
    try:
        bindir()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must be there in CI: {exc}")
        pytest.skip(str(exc))
    args = parse_args(["--quick", "--boxes", "6", "--rates", "300", "--step-seconds", "0.8", "--messages", "300"])
    args.dir = tmp_path_factory.mktemp("bench")
    report = run_benchmark(args)
    lines: list[str] = []
    print_report(report, args, out=lines.append)
    return report, "\n".join(lines)


def test_the_ceiling_steps_run_on_both_engines_against_the_target(quick: tuple[Report, str]) -> None:
    report, text = quick
    assert list(report.ceiling) == ["sqlite", "postgresql"]
    for steps in report.ceiling.values():
        (step,) = steps
        assert step.sent == 240 and step.acked == step.sent and step.lost == 0
        assert len(step.latencies_ms) == step.sent
        assert step.applied == step.sent and step.out_of_order == 0
    assert "× target" in text and "peer:   raw paho QoS 1" in text and report.raw.rate > 0


def test_one_two_and_three_workers_apply_every_message_once_in_order(quick: tuple[Report, str]) -> None:
    report, text = quick
    assert [count for count, _ in report.scaling] == [1, 2, 3]
    for _, step in report.scaling:
        assert step.sent == 300 and step.acked == 300
        assert step.applied == 300 and step.out_of_order == 0
    assert "× 1" in text


def test_script_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "backoffice.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--workers" in done.stdout
