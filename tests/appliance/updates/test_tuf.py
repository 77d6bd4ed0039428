"""Releases through TUF over HTTPS (python-tuf ngclient on the box side, metadata API on the
repository side): what is signed installs; every kind of tampering is refused and installs nothing."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from tuf.api import exceptions as tuf_errors

from appliance.updates.layout import Layout
from appliance.updates.repository import Repository, write_key
from sync.update_agent import TufArchiveSource, TufSettings, check_channel, handle_update_offer
from tests.appliance.updates.conftest import Repo, Tls
from tests.appliance.updates.fakes import FakeRestarter, make_agent


def box_source(repo: Repo, tls: Tls, metadata_dir: Path) -> TufArchiveSource:
    """A box that trusts the repository's first root (as provisioned) and the test CA."""
    metadata_dir.mkdir(parents=True, exist_ok=True)
    if not (metadata_dir / "root.json").exists():
        shutil.copy(repo.path / "metadata" / "1.root.json", metadata_dir / "root.json")
    settings = TufSettings(
        metadata_url=f"{repo.served.url}/metadata/",
        targets_url=f"{repo.served.url}/targets/",
        metadata_dir=metadata_dir,
        ca_file=tls.ca_file,
    )
    return TufArchiveSource(settings)


def test_a_published_release_downloads_over_https(repo: Repo, tls: Tls, releases: dict[str, Path], tmp_path: Path):
    repo.repo.publish(releases["0.2.0"], channel="stable")
    source = box_source(repo, tls, tmp_path / "tuf")
    got = source.fetch("0.2.0", tmp_path / "dl")
    assert got.read_bytes() == releases["0.2.0"].read_bytes()
    assert source.channel_version("stable", tmp_path / "dl") == "0.2.0"


def test_an_unknown_target_is_refused(repo: Repo, tls: Tls, releases: dict[str, Path], tmp_path: Path):
    repo.repo.publish(releases["0.2.0"])
    with pytest.raises(Exception, match="not offered"):
        box_source(repo, tls, tmp_path / "tuf").fetch("0.3.0", tmp_path / "dl")


def test_a_tampered_archive_is_refused_and_nothing_is_installed(
    repo: Repo, tls: Tls, releases: dict[str, Path], box: tuple[Layout, Path], tmp_path: Path
):
    repo.repo.publish(releases["0.2.0"])
    (served,) = (repo.path / "targets").glob("*.comptoir-0.2.0.tar")
    data = bytearray(served.read_bytes())
    data[len(data) // 2] ^= 0x01  # same length, one bit flipped
    served.write_bytes(bytes(data))
    layout, db = box
    with pytest.raises(tuf_errors.LengthOrHashMismatchError):
        box_source(repo, tls, tmp_path / "tuf").fetch("0.2.0", tmp_path / "dl")
    agent = make_agent(layout, db, FakeRestarter(layout), source=box_source(repo, tls, layout.tuf_metadata))
    outcome = handle_update_offer(agent, {"version": "0.2.0"})
    assert outcome.result == "aborted" and "LengthOrHashMismatch" in outcome.reason
    assert layout.current_version() == "0.1.0" and layout.installed_versions() == ["0.1.0"]


def test_older_metadata_is_refused_rollback_attack(repo: Repo, tls: Tls, releases: dict[str, Path], tmp_path: Path):
    old_state = tmp_path / "old-metadata"
    shutil.copytree(repo.path / "metadata", old_state)  # v1 of everything
    repo.repo.publish(releases["0.2.0"])
    source = box_source(repo, tls, tmp_path / "tuf")
    source.fetch("0.2.0", tmp_path / "dl")  # the box has seen timestamp/snapshot/targets v2
    shutil.rmtree(repo.path / "metadata")
    shutil.copytree(old_state, repo.path / "metadata")  # an attacker (or a stale mirror) serves v1
    with pytest.raises(tuf_errors.BadVersionNumberError):
        source.fetch("0.2.0", tmp_path / "dl2")


def test_expired_metadata_is_refused(repo: Repo, tls: Tls, releases: dict[str, Path], tmp_path: Path):
    repo.repo.publish(releases["0.2.0"], expires={"timestamp": timedelta(seconds=-60)})
    with pytest.raises(tuf_errors.ExpiredMetadataError):
        box_source(repo, tls, tmp_path / "tuf").fetch("0.2.0", tmp_path / "dl")


def test_metadata_signed_with_the_wrong_key_is_refused(repo: Repo, tls: Tls, releases: dict[str, Path], tmp_path: Path):
    (repo.keys / "targets.pem").unlink()
    write_key(repo.keys / "targets.pem")  # a key root does not know
    repo.repo.publish(releases["0.2.0"])
    with pytest.raises(tuf_errors.UnsignedMetadataError):
        box_source(repo, tls, tmp_path / "tuf").fetch("0.2.0", tmp_path / "dl")


def test_mix_and_match_metadata_is_refused(repo: Repo, tls: Tls, releases: dict[str, Path], tmp_path: Path):
    repo.repo.publish(releases["0.2.0"])  # targets v2
    targets_v2 = (repo.path / "metadata" / "2.targets.json").read_bytes()
    repo.repo.publish(releases["0.3.0"])  # targets v3, snapshot v3 names targets v3
    (repo.path / "metadata" / "3.targets.json").write_bytes(targets_v2)  # validly signed, other state
    with pytest.raises(tuf_errors.RepositoryError):
        box_source(repo, tls, tmp_path / "tuf").fetch("0.3.0", tmp_path / "dl")


def test_a_box_follows_key_rotation(repo: Repo, tls: Tls, releases: dict[str, Path], tmp_path: Path):
    source = box_source(repo, tls, tmp_path / "tuf")  # trusts root v1
    repo.repo.publish(releases["0.2.0"])
    source.fetch("0.2.0", tmp_path / "dl")
    write_key(tmp_path / "new-targets.pem")
    assert repo.repo.rotate_key("targets", tmp_path / "new-targets.pem") == 2
    write_key(tmp_path / "new-root.pem")
    assert repo.repo.rotate_key("root", tmp_path / "new-root.pem") == 3
    repo.repo.publish(releases["0.3.0"])  # signed with the new targets key
    assert source.fetch("0.3.0", tmp_path / "dl").read_bytes() == releases["0.3.0"].read_bytes()
    assert '"version": 3' in (tmp_path / "tuf" / "root.json").read_text()


def test_the_timer_installs_the_channel_release_through_tuf(
    repo: Repo, tls: Tls, releases: dict[str, Path], box: tuple[Layout, Path]
):
    repo.repo.publish(releases["0.2.0"], channel="stable")
    layout, db = box
    source = box_source(repo, tls, layout.tuf_metadata)
    agent = make_agent(layout, db, FakeRestarter(layout), source=source)
    outcome = check_channel(agent, source, "stable")
    assert outcome.result == "committed", outcome
    assert layout.current_version() == "0.2.0" and layout.good_version() == "0.2.0"
    assert check_channel(agent, source, "stable").result == "noop"
    # the timestamp key alone keeps the repository fresh
    assert Repository(repo.path, repo.keys).refresh_timestamp() == 3
