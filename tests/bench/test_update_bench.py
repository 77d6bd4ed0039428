"""The update benchmark measures what it claims: behaviour only, never speed."""

from __future__ import annotations

from pathlib import Path

from bench.update import PHASES, parse_args, print_report, run_benchmark


def test_quick_run_installs_rolls_back_and_prints_every_row(tmp_path: Path) -> None:
    args = parse_args(["--quick", "--dir", str(tmp_path)])
    report = run_benchmark(args)
    assert sorted(report.outcomes) == ["install:committed", "rollback:rolled_back"]
    lines: list[str] = []
    print_report(report, args, out=lines.append)
    text = "\n".join(lines)
    for label, _, _ in PHASES:
        assert label in text
    for row in ("download + install + switch + health", "peer: plain copy", "rollback", "archive 0.2.0", "gzip"):
        assert row in text
    assert report.sizes["archive 0.2.0 (downloaded)"] > 100_000
    assert list(tmp_path.iterdir()) == []  # everything of the run was removed
