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
        "memory after 1 sessions, e-CPS login configured (RSS)",
        "peak memory over the run (VmHWM)",
        "growth per session (1 -> 3)",
        "scan-to-screen, apCV identified",
        "scan-to-screen, mutuelle attestation read",
        "scan-to-screen, ePrescription fetched",
        "scan-to-screen, box accepted, in the sessions, p99",
        "scan-to-screen, box accepted, p50",
        "scan-to-screen, box accepted, p99",
        "scan-to-screen, box refused (serial already scanned), p99",
        "scan-to-screen, unreadable code refused, p99",
        "peer: a bare Kivy app",
        "sandbox's share when it runs inside the kiosk's process",
        "where a scan's time goes",
        "dirty pages (what the kernel cannot take back",
        "the kiosk as the box composes it (ui.production, PIN login) with a box's packages only",
    ):
        assert row in text, row
    assert "100 ms" in text and "200 MB" in text and "2 s" in text


def test_soak_and_sandbox_options() -> None:
    assert parse_args(["--soak"]).sessions == 1000
    assert parse_args(["--quick"]).inprocess_sessions == 1
    assert parse_args(["--quick"]).ecps_sessions == 1
    assert parse_args(["--sessions", "5", "--inprocess-sessions", "0"]).inprocess_sessions == 0


def test_sessions_ran_and_samples_were_taken(quick: tuple[Report, str]) -> None:
    report, _ = quick
    assert report.sessions == 3
    assert report.refused == []  # every session went to its receipt, every refusal sampled was one
    assert sorted(report.rss_mb) == [0, 1, 3] and all(v > 10 for v in report.rss_mb.values())
    assert report.peak_mb >= max(report.rss_mb.values())
    assert sorted(report.inprocess_rss_mb) == [0, 1] and report.sandbox_mb > 10 and report.bare_mb > 10
    assert sorted(report.dirty_mb) == [0, 1, 3]  # dirty pages are part of the resident ones
    assert all(0 < report.dirty_mb[k] < report.rss_mb[k] for k in report.dirty_mb) and report.bare_dirty_mb > 0
    assert 0 < report.renderer_dirty_mb < report.renderer_mb
    for kind in ("box", "box-refused", "unreadable"):
        assert len(report.scans_ms[kind]) == 10, kind
    for kind in ("apcv", "attestation", "eprescription"):
        assert len(report.scans_ms[kind]) == 3, kind
    assert len(report.scans_ms["session-box"]) == 9
    samples = [ms for values in report.scans_ms.values() for ms in values]
    assert all(ms > 0 and math.isfinite(ms) for ms in samples)
    for kind, parts in report.split_ms.items():  # the worker's and the view model's shares are inside the total
        assert len(parts["handle"]) == len(report.scans_ms[kind])
        assert all(h + a < t for h, a, t in zip(parts["handle"], parts["apply"], report.scans_ms[kind], strict=True))
        assert all(c <= h for c, h in zip(parts["copy"], parts["handle"], strict=True))
    assert len(report.cold_start_s) == 1 and 0 < report.cold_start_s[0] < 120


def test_the_kiosk_measured_is_the_one_a_box_composes(quick: tuple[Report, str]) -> None:
    """The production composition root on a configuration file, the sandbox in another process: nothing of
    the sandbox, the bench or the e-CPS client (a box logging in by PIN) is counted in the kiosk's memory."""
    report, text = quick
    assert report.foreign_modules == []
    assert "modules in the kiosk's process: none" in text


def test_a_box_with_the_ecps_login_is_measured_too(quick: tuple[Report, str]) -> None:
    """The [psc] table makes the kiosk build its Pro Santé Connect client: that box's memory is reported
    beside the PIN-only box's, with the e-CPS client's libraries actually loaded."""
    report, text = quick
    assert sorted(report.ecps_rss_mb) == [0, 1] and all(v > 10 for v in report.ecps_rss_mb.values())
    assert {"authlib", "joserfc"} <= {name.partition(".")[0] for name in report.ecps_modules}
    assert "a box with the e-CPS login configured" in text


def test_the_kiosk_child_is_given_the_development_only_packages_to_refuse() -> None:
    """A box installs comptoir's requirements alone: the development environment's extras (selenium's trio,
    pytest, hypothesis) must not be counted in the kiosk's memory, and what a box has must stay allowed."""
    from bench.kiosk import dev_only_packages

    refused = set(dev_only_packages())
    assert {"trio", "selenium", "pytest", "hypothesis"} <= refused
    assert not refused & {"kivy", "httpx", "httpcore", "numpy", "sqlite_utils", "biip", "lxml", "pygments", "pip"}
