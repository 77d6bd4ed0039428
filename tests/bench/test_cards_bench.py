"""The smart-card benchmark measures what it claims: behaviour only, never speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cards import Report, parse_args, percentile, print_report, run_benchmark

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick() -> tuple[Report, str]:
    args = parse_args(["--quick"])
    report = run_benchmark(args)
    lines: list[str] = []
    print_report(report, args, out=lines.append)
    return report, "\n".join(lines)


def test_every_insertion_gave_the_three_beneficiaries(quick: tuple[Report, str]) -> None:
    report, _ = quick
    assert report.beneficiaries == [3, 3, 3]
    assert len(report.insertion.times_ms) == len(report.detection.times_ms) == len(report.read.times_ms) == 3


def test_insertion_is_detection_plus_read(quick: tuple[Report, str]) -> None:
    report, _ = quick
    for total, detection, read in zip(
        report.insertion.times_ms, report.detection.times_ms, report.read.times_ms, strict=True
    ):
        assert detection > 0 and read > 0
        assert total == pytest.approx(detection + read)


def test_table_has_the_apdu_floor_beside_the_insertion(quick: tuple[Report, str]) -> None:
    report, text = quick
    assert len(report.apdu.times_ms) == 50 and len(report.vitale_read.times_ms) == 5
    for row in ("insertion -> beneficiaries", "detection", "read (CardPresent", "Vitale read", "bare APDU"):
        assert row in text, row
    assert "p50 ms" in text and "p95 ms" in text and "p50 / APDU" in text


def test_percentile_is_nearest_rank() -> None:
    assert percentile([1.0], 95) == 1.0
    assert percentile([float(i) for i in range(1, 101)], 50) == 50.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


def test_script_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "cards.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--insertions" in done.stdout
