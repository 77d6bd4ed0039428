"""Small pieces: versions, wheel tags, manifests, the journal, the health verdict, the archive."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from appliance.updates.archive import build_archive, build_project_wheel
from appliance.updates.health import judge, read_reports, report, wait_healthy
from appliance.updates.installer import InstallError, install_archive
from appliance.updates.journal import Journal
from appliance.updates.layout import Layout
from appliance.updates.manifest import ManifestError, ReleaseManifest, parse_version, wheel_fits
from tests.appliance.updates.releases import ROOT


def test_versions_order_and_refuse_ambiguity():
    assert parse_version("0.2.0rc1") < parse_version("0.2.0") < parse_version("0.10.0")
    for bad in ("1.2", "v1.2.3", "1.2.3+local", "1!1.2.3"):
        with pytest.raises(ManifestError):
            parse_version(bad)


def test_wheels_fit_the_box_they_are_for():
    arm = "cryptography-50.0.2-cp311-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"
    assert wheel_fits(arm, "aarch64") and not wheel_fits(arm, "x86_64")
    assert wheel_fits("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", "x86_64")
    assert not wheel_fits("numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl", "x86_64")
    assert wheel_fits("biip-5.2.0-py3-none-any.whl", "aarch64")


def test_the_project_wheel_and_the_archive_are_reproducible(tmp_path: Path):
    a = build_project_wheel(ROOT, tmp_path / "a", version="9.9.9")
    b = build_project_wheel(ROOT, tmp_path / "b", version="9.9.9")
    assert a.read_bytes() == b.read_bytes()
    x, manifest = build_archive(tmp_path / "x", version="9.9.9", wheels=[a], schema_version=7)
    y, _ = build_archive(tmp_path / "y", version="9.9.9", wheels=[b], schema_version=7)
    assert x.read_bytes() == y.read_bytes()
    assert ReleaseManifest.loads(manifest.dumps()) == manifest


def test_an_archive_with_a_wheel_not_matching_its_manifest_is_refused(tmp_path: Path):
    wheel = build_project_wheel(ROOT, tmp_path / "w", version="9.9.9")
    archive, _ = build_archive(tmp_path, version="9.9.9", wheels=[wheel], schema_version=7)
    evil = tmp_path / "evil.tar"
    with tarfile.open(archive) as src, tarfile.open(evil, "w") as dst:
        for member in src:
            data = src.extractfile(member)
            assert data is not None
            body = data.read()
            if member.name.endswith(".whl"):
                body = body[:-1] + bytes([body[-1] ^ 1])
            import io

            dst.addfile(member, io.BytesIO(body))
    layout = Layout.under(tmp_path / "box")
    with pytest.raises(InstallError, match="does not match its manifest hash"):
        install_archive(evil, layout)
    assert layout.installed_versions() == []


def test_the_journal_survives_a_torn_line(tmp_path: Path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append("t", "started", to="0.2.0")
    with (tmp_path / "j.jsonl").open("ab") as f:
        f.write(b'{"seq": 2, "txn": "t", "eve')
    journal.append("t", "downloaded")
    assert [e.event for e in journal.entries()] == ["started", "downloaded"]
    assert [e.seq for e in journal.entries()] == [1, 2]


def test_the_health_verdict_needs_fresh_reports_of_the_new_version(tmp_path: Path):
    report(tmp_path, "kiosk", version="0.2.0", ok=True, detail={"frames": 12}, now=100.0)
    report(tmp_path, "database", version="0.1.0", ok=True, now=100.0)
    report(tmp_path, "devices", version="0.2.0", ok=False, now=100.0)
    report(tmp_path, "sync", version="0.2.0", ok=True, now=50.0)
    verdict = judge(
        read_reports(tmp_path), version="0.2.0", since=99.0, required=("kiosk", "database", "devices", "sync")
    )
    assert not verdict.ok and verdict.missing == ("database", "sync") and verdict.failing == ("devices",)
    assert read_reports(tmp_path)["kiosk"].detail == {"frames": 12}
    ticks = iter(range(100))
    slept: list[float] = []
    verdict = wait_healthy(
        tmp_path, version="0.2.0", since=99.0, deadline=5.0, required=("kiosk",),
        monotonic=lambda: float(next(ticks)), sleep=slept.append,
    )  # fmt: skip
    assert verdict.ok and slept == []
    verdict = wait_healthy(
        tmp_path, version="0.2.0", since=99.0, deadline=5.0, required=("sync",),
        monotonic=lambda: float(next(ticks)), sleep=slept.append,
    )  # fmt: skip
    assert not verdict.ok and verdict.waited == 5.0 and len(slept) == 4  # bounded
