"""The release manifest (``release.json``): what a release archive holds and what it needs.

An archive ``comptoir-<version>.tar`` holds ``release.json`` and ``wheels/*.whl``. The manifest names
every wheel with its SHA-256 and size, the schema version the release migrates to, and the oldest
schema version it can still run on. The archive as a whole is what TUF signs (a target); the wheel
hashes let the installer check each file again after unpacking (defence in depth, and a clear error
naming the wheel).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MANIFEST_NAME = "release.json"
FORMAT = 1

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:([.-]?)(a|b|rc)(\d+))?$")
_PRE_ORDER = {"a": 0, "b": 1, "rc": 2}


class ManifestError(ValueError):
    """A manifest or version string that cannot be used; the message names what is wrong."""


def parse_version(text: str) -> tuple[int, int, int, int, int]:
    """Order release versions: ``1.2.3`` and pre-releases ``1.2.3rc1`` / ``1.2.3a2`` (below ``1.2.3``).

    A deliberately small subset of PEP 440: a box compares versions to refuse downgrades, so
    anything ambiguous (local versions, epochs) is refused rather than guessed.
    """
    match = _VERSION.match(text)
    if match is None:
        raise ManifestError(f"not a release version (MAJOR.MINOR.PATCH[aN|bN|rcN]): {text!r}")
    major, minor, patch = int(match.group(1)), int(match.group(2)), int(match.group(3))
    if match.group(5) is None:
        return (major, minor, patch, 3, 0)
    return (major, minor, patch, _PRE_ORDER[match.group(5)], int(match.group(6)))


def archive_name(version: str) -> str:
    """The TUF target path of a release's archive."""
    parse_version(version)
    return f"comptoir-{version}.tar"


@dataclass(frozen=True, slots=True)
class WheelEntry:
    """One wheel of the archive (its file name carries the platform tags)."""

    filename: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, slots=True)
class ReleaseManifest:
    """What ``release.json`` says. ``schema_version`` is the last migration the release applies;
    ``reads_schema_from`` the oldest schema version it runs on (the compatibility rule keeps it at 1
    while every migration is additive; see :mod:`appliance.updates.migration_rule`)."""

    version: str
    schema_version: int
    wheels: tuple[WheelEntry, ...]
    reads_schema_from: int = 1
    python: str = "3.11"
    platforms: tuple[str, ...] = ("aarch64", "x86_64")
    created_at: str = ""
    notes: str = ""
    binary_dependencies: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        parse_version(self.version)
        if self.schema_version < 0 or self.reads_schema_from < 0:
            raise ManifestError("schema versions are not negative")
        names = [w.filename for w in self.wheels]
        if len(set(names)) != len(names):
            raise ManifestError("a wheel is listed twice in the manifest")
        for name in names:
            if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".whl"):
                raise ManifestError(f"bad wheel file name in the manifest: {name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "schema_version": self.schema_version,
            "reads_schema_from": self.reads_schema_from,
            "python": self.python,
            "platforms": list(self.platforms),
            "created_at": self.created_at,
            "notes": self.notes,
            "wheels": [w.to_json() for w in self.wheels],
            "binary_dependencies": list(self.binary_dependencies),
        }

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes) -> ReleaseManifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise ManifestError(f"unknown manifest format {raw.get('format')!r} (this box reads {FORMAT})")
            return cls(
                version=str(raw["version"]),
                schema_version=int(raw["schema_version"]),
                reads_schema_from=int(raw.get("reads_schema_from", 1)),
                python=str(raw.get("python", "3.11")),
                platforms=tuple(str(p) for p in raw.get("platforms", ())),
                created_at=str(raw.get("created_at", "")),
                notes=str(raw.get("notes", "")),
                wheels=tuple(WheelEntry(str(w["filename"]), str(w["sha256"]), int(w["size"])) for w in raw["wheels"]),
                binary_dependencies=tuple(str(d) for d in raw.get("binary_dependencies", ())),
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"unreadable release manifest: {exc}") from exc


def wheel_tags(filename: str) -> tuple[str, str, str]:
    """(python tag, abi tag, platform tag) of a wheel file name (PEP 427)."""
    stem = filename.removesuffix(".whl")
    parts = stem.split("-")
    if len(parts) not in (5, 6):
        raise ManifestError(f"not a wheel file name: {filename!r}")
    return parts[-3], parts[-2], parts[-1]


def wheel_fits(filename: str, machine: str, python: str = "3.11") -> bool:
    """Whether a wheel installs on a box of this CPU (``platform.machine()``) and CPython version."""
    py_tag, abi_tag, plat_tag = wheel_tags(filename)
    cp = "cp" + python.replace(".", "")
    py_ok = any(t in ("py3", "py2.py3", cp) or t.startswith("py3") for t in py_tag.split(".")) or cp in py_tag
    abi_ok = any(t in ("none", "abi3", cp) for t in abi_tag.split("."))
    plat_ok = any(
        t == "any" or (t.endswith("_" + machine) and t.startswith(("manylinux", "linux"))) for t in plat_tag.split(".")
    )
    return py_ok and abi_ok and plat_ok
