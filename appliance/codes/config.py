"""Per-deployment settings of the code reader: opaque patterns and the attestation layout.

Read from the ``[codes]`` table of a TOML file so that a pharmacy's vendor agreement can be applied
without a new release.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.codes.attestation import AttestationLayout
from appliance.codes.opaque import OpaquePatterns


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the reason."""


@dataclass(frozen=True)
class CodeConfig:
    opaque: OpaquePatterns = field(default_factory=OpaquePatterns)
    attestation: AttestationLayout = field(default_factory=AttestationLayout)

    @classmethod
    def from_toml(cls, path: Path) -> CodeConfig:
        """Settings from ``path``; keys left out keep their defaults."""
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        codes: dict[str, Any] = document.get("codes", {})
        try:
            opaque = OpaquePatterns(
                apcv=tuple(codes.get("apcv", {}).get("patterns", OpaquePatterns.apcv)),
                eprescription=tuple(codes.get("eprescription", {}).get("patterns", OpaquePatterns.eprescription)),
            )
            layout_keys = codes.get("attestation", {})
            unknown = set(layout_keys) - {
                "marker",
                "separators",
                "fields",
                "list_separators",
                "date_formats",
                "required",
            }
            if unknown:
                raise ConfigError(f"{path}: unknown [codes.attestation] keys: {', '.join(sorted(unknown))}")
            defaults = AttestationLayout()
            layout = AttestationLayout(
                marker=str(layout_keys.get("marker", defaults.marker)),
                separators=tuple(layout_keys.get("separators", defaults.separators)),
                fields=tuple(layout_keys.get("fields", defaults.fields)),
                list_separators=str(layout_keys.get("list_separators", defaults.list_separators)),
                date_formats=tuple(layout_keys.get("date_formats", defaults.date_formats)),
                required=tuple(layout_keys.get("required", defaults.required)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{path}: {exc}") from None
        return cls(opaque=opaque, attestation=layout)
