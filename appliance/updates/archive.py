"""Building a release: a reproducible wheel of comptoir itself, then the archive (manifest + wheels).

:func:`build_project_wheel` writes a PEP 427 wheel from the source tree without setuptools or
network: files sorted, timestamps fixed (``SOURCE_DATE_EPOCH``, default 2024-01-01), so the same
tree gives the same bytes. Dependency wheels come from a *wheelhouse* directory prepared beforehand
for each platform (``pip download --only-binary=:all: --platform manylinux2014_aarch64 …``, see
``image-build/README.md``); sdist-only dependencies (evdev, xkbcommon) are built by the image
recipe and listed in the manifest's ``binary_dependencies`` instead.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from appliance.updates.manifest import MANIFEST_NAME, ReleaseManifest, WheelEntry, archive_name, parse_version

DEFAULT_EPOCH = 1704067200  # 2024-01-01T00:00:00Z
SHIPPED_PACKAGES = ("appliance", "drivers", "ui", "sync", "sandbox")
"""What pyproject's ``[tool.setuptools.packages.find]`` ships (``sandbox`` too: the CLI's parser imports it)."""


def _epoch() -> int:
    return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))


def _zip_info(name: str, *, executable: bool = False) -> zipfile.ZipInfo:
    stamp = datetime.fromtimestamp(max(_epoch(), 315532800), UTC).timetuple()[:6]
    info = zipfile.ZipInfo(name, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o755 if executable else 0o644) << 16
    return info


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(
    out_dir: Path,
    *,
    name: str,
    version: str,
    files: Mapping[str, bytes],
    requires: Sequence[str] = (),
    entry_points: str = "",
) -> Path:
    """Write a pure-Python wheel holding ``files`` (archive path -> bytes); return its path."""
    dist = name.replace("-", "_")
    info_dir = f"{dist}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", "Requires-Python: >=3.11,<3.12"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    extra = {
        f"{info_dir}/METADATA": ("\n".join(metadata) + "\n").encode(),
        f"{info_dir}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: comptoir-release\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    if entry_points:
        extra[f"{info_dir}/entry_points.txt"] = entry_points.encode()
    content = {**dict(sorted(files.items())), **extra}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dist}-{version}-py3-none-any.whl"
    records = [_record_line(n, d) for n, d in content.items()]
    records.append(f"{info_dir}/RECORD,,")
    with zipfile.ZipFile(path, "w") as wheel:
        for entry_name, data in content.items():
            wheel.writestr(_zip_info(entry_name), data)
        wheel.writestr(_zip_info(f"{info_dir}/RECORD"), ("\n".join(records) + "\n").encode())
    return path


def project_files(root: Path, packages: Iterable[str] = SHIPPED_PACKAGES) -> dict[str, bytes]:
    """The shipped source files of the project tree (no tests, caches or compiled files)."""
    files: dict[str, bytes] = {}
    for package in packages:
        base = root / package
        for path in sorted(base.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                continue
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def build_project_wheel(root: Path, out_dir: Path, *, version: str | None = None) -> Path:
    """The comptoir wheel of the tree at ``root`` (version from pyproject.toml unless given)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    version = version or str(project["version"])
    parse_version(version)
    scripts = project.get("scripts", {})
    entry_points = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items()) if scripts else ""
    return build_wheel(
        out_dir,
        name=str(project["name"]),
        version=version,
        files=project_files(root),
        requires=[str(r) for r in project.get("dependencies", [])],
        entry_points=entry_points,
    )


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = _epoch()
    info.mode = 0o644
    info.uname = info.gname = "root"
    return info


def build_archive(
    out_dir: Path,
    *,
    version: str,
    wheels: Sequence[Path],
    schema_version: int,
    reads_schema_from: int = 1,
    binary_dependencies: Sequence[str] = (),
    notes: str = "",
) -> tuple[Path, ReleaseManifest]:
    """Write ``comptoir-<version>.tar`` (``release.json`` first, then ``wheels/``), reproducibly."""
    entries = []
    for wheel in sorted(wheels, key=lambda p: p.name):
        data = wheel.read_bytes()
        entries.append(WheelEntry(wheel.name, hashlib.sha256(data).hexdigest(), len(data)))
    manifest = ReleaseManifest(
        version=version,
        schema_version=schema_version,
        reads_schema_from=reads_schema_from,
        wheels=tuple(entries),
        created_at=datetime.fromtimestamp(_epoch(), UTC).isoformat(),
        notes=notes,
        binary_dependencies=tuple(binary_dependencies),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / archive_name(version)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        body = manifest.dumps()
        tar.addfile(_tar_info(MANIFEST_NAME, len(body)), io.BytesIO(body))
        for wheel in sorted(wheels, key=lambda p: p.name):
            data = wheel.read_bytes()
            tar.addfile(_tar_info(f"wheels/{wheel.name}", len(data)), io.BytesIO(data))
    os.replace(tmp, path)
    return path, manifest
