"""Where an installed app lives on a box, and the atomic ``current`` switch.

The root filesystem is read-only (image-build), so the app lives on the data partition::

    /var/lib/comptoir/app/releases/<version>/   one directory per installed release (site/, bin/, release.json)
    /var/lib/comptoir/app/current -> releases/<version>    what the units run (bin/comptoir)
    /var/lib/comptoir/update/journal.jsonl      the install journal
    /var/lib/comptoir/update/downloads/         verified archives (TUF's target directory)
    /var/lib/comptoir/update/tuf/               TUF's trusted metadata
    /run/comptoir/health/<component>.json       the health reports (tmpfs: gone at reboot)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.store.sealing import fsync_directory

StepHook = Callable[[str], None]
"""Told the name of each fine-grained step (the SIGKILL tests kill the process there)."""

PARTIAL_SUFFIX = ".partial"
TMP_LINK_PREFIX = ".current.tmp-"


@dataclass(frozen=True, slots=True)
class Layout:
    """The directories of one box (or of one test)."""

    app: Path
    state: Path
    run: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(Path("/var/lib/comptoir/app"), Path("/var/lib/comptoir/update"), Path("/run/comptoir"))

    @classmethod
    def under(cls, root: Path) -> Layout:
        """Everything below one directory (tests, benchmarks, an image being built)."""
        return cls(root / "app", root / "update", root / "run")

    @property
    def releases(self) -> Path:
        return self.app / "releases"

    @property
    def current(self) -> Path:
        return self.app / "current"

    @property
    def journal(self) -> Path:
        return self.state / "journal.jsonl"

    @property
    def downloads(self) -> Path:
        return self.state / "downloads"

    @property
    def tuf_metadata(self) -> Path:
        return self.state / "tuf"

    @property
    def health(self) -> Path:
        return self.run / "health"

    def release_dir(self, version: str) -> Path:
        return self.releases / version

    @property
    def good(self) -> Path:
        """The last release that passed its health check (moved only at commit); boot-time recovery
        runs from it, so a broken release under trial cannot stop its own roll-back."""
        return self.app / "good"

    def current_version(self) -> str | None:
        """The version ``current`` points to (None before the first installation)."""
        return _link_version(self.current)

    def good_version(self) -> str | None:
        return _link_version(self.good)

    def installed_versions(self) -> list[str]:
        if not self.releases.is_dir():
            return []
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir() and not p.name.endswith(PARTIAL_SUFFIX))

    def switch_current(self, version: str, *, on_step: StepHook | None = None) -> None:
        """Point ``current`` at ``releases/<version>`` atomically (see :meth:`switch_link`)."""
        self.switch_link(self.current, version, on_step=on_step)

    def switch_link(self, link: Path, version: str, *, on_step: StepHook | None = None) -> None:
        """Point ``link`` at ``releases/<version>`` atomically: a new link under a temporary name,
        then ``rename`` over the old one (readers see the old or the new link, never none), then an
        fsync of the directory so the switch survives a power cut."""
        target = self.release_dir(version)
        if not (target / "bin").is_dir():
            raise FileNotFoundError(f"release {version} is not installed at {target}")
        tmp = self.app / f"{TMP_LINK_PREFIX}{link.name}-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("releases") / version, tmp)
        if on_step:
            on_step(f"{link.name}.link_created")
        os.replace(tmp, link)
        if on_step:
            on_step(f"{link.name}.renamed")
        fsync_directory(self.app)

    def clean_leftovers(self, keep: set[str]) -> list[Path]:
        """Remove temporary links and partial release directories (not ``keep``); return them."""
        removed: list[Path] = []
        if self.app.is_dir():
            for tmp in self.app.glob(f"{TMP_LINK_PREFIX}*"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        if self.releases.is_dir():
            for path in self.releases.iterdir():
                if path.name.endswith(PARTIAL_SUFFIX) and path.name.removesuffix(PARTIAL_SUFFIX) not in keep:
                    remove_tree(path)
                    removed.append(path)
        return removed


def _link_version(link: Path) -> str | None:
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    return Path(target).name


def remove_tree(path: Path) -> None:
    """Remove a directory tree (symlinks are removed, never followed)."""
    import shutil

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
