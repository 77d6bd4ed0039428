"""The kiosk benchmark measures what it claims (quick mode): behaviour only, never speed."""

from __future__ import annotations

import math

import pytest

from bench.kiosk import Report, format_report, parse_args, run_benchmark


@pytest.fixture(scope="module")
def quick() -> tuple[Report, str]:
    args = parse_args(["--quick"])
    report = run_benchmark(args)
    return report, format_report(report, args)


def test_every_row_is_printed_against_its_target(quick: tuple[Report, str]) -> None:
    _, text = quick
    for row in (
        "cold start to attract screen",
        "memory on the attract screen",
        "memory after 1 session(s) (RSS)",
        "memory after 3 sessions (RSS)",
        "growth per session (1 -> 3)",
        "scan-to-screen, box accepted, p50",
        "scan-to-screen, box accepted, p99",
        "scan-to-screen, unreadable code refused, p99",
    ):
        assert row in text, row
    assert "100 ms" in text and "200 MB" in text


def test_sessions_ran_and_samples_were_taken(quick: tuple[Report, str]) -> None:
    report, _ = quick
    assert report.sessions == 3
    assert report.refused == []  # every session went to its receipt
    assert sorted(report.rss_mb) == [0, 1, 3] and all(v > 10 for v in report.rss_mb.values())
    assert len(report.box_ms) == 10 and len(report.unreadable_ms) == 10
    assert all(ms > 0 and math.isfinite(ms) for ms in report.box_ms + report.unreadable_ms)
    assert len(report.cold_start_s) == 1 and 0 < report.cold_start_s[0] < 120
