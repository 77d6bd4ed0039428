"""apCV and ePrescription QR codes: tokens whose syntax is not public.

The counter never interprets them: it recognises them by configurable patterns (or by what the
current step expects) and forwards the raw bytes to the teleservice that understands them.
The default patterns are the sandbox's; a deployment sets the ones given by the vendor agreement.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from appliance.codes.errors import OpaqueTokenError
from appliance.codes.kinds import CodeKind

OPAQUE_KINDS = (CodeKind.APCV, CodeKind.EPRESCRIPTION)

DEFAULT_APCV_PATTERNS = (r"^APCV[0-9]{2}:[A-Za-z0-9_\-]{16,1024}$",)
"""The sandbox apCV context: ``APCV`` + 2-digit version + ``:`` + base64url context."""
DEFAULT_EPRESCRIPTION_PATTERNS = (r"^EP[0-9A-Z]{4}(?:-[0-9A-Z]{4}){3}$",)
"""The sandbox prescription id, as printed in clear under the QR: ``EPXXXX-XXXX-XXXX-XXXX``."""


def _compile(patterns: Iterable[str]) -> tuple[re.Pattern[bytes], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern.encode("utf-8"), re.DOTALL))
        except re.error as exc:
            raise ValueError(f"code pattern {pattern!r} is not a valid regular expression: {exc}") from None
    return tuple(compiled)


@dataclass(frozen=True)
class OpaquePatterns:
    """Regular expressions (full match over the raw bytes) recognising each opaque kind."""

    apcv: tuple[str, ...] = DEFAULT_APCV_PATTERNS
    eprescription: tuple[str, ...] = DEFAULT_EPRESCRIPTION_PATTERNS
    _compiled: dict[CodeKind, tuple[re.Pattern[bytes], ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self._compiled[CodeKind.APCV] = _compile(self.apcv)
        self._compiled[CodeKind.EPRESCRIPTION] = _compile(self.eprescription)

    def match(self, data: bytes) -> CodeKind | None:
        """The opaque kind whose pattern matches, or None."""
        for kind in OPAQUE_KINDS:
            if any(p.fullmatch(data) for p in self._compiled[kind]):
                return kind
        return None


@dataclass(frozen=True, slots=True)
class OpaqueToken:
    """An apCV context or ePrescription id, kept byte for byte."""

    kind: CodeKind
    raw: bytes
    matched_pattern: bool
    """False when it was taken for this kind only because the workflow step expected it."""

    @property
    def text(self) -> str | None:
        """The token as text when it is printable ASCII (an ePrescription id is also printed in clear)."""
        try:
            text = self.raw.decode("ascii")
        except UnicodeDecodeError:
            return None
        return text if text.isprintable() else None

    def to_fields(self) -> dict[str, Any]:
        text = self.text
        return {
            "token": text if text is not None else base64.b64encode(self.raw).decode("ascii"),
            "token_encoding": "text" if text is not None else "base64",
            "matched_pattern": self.matched_pattern,
        }


def read_opaque(data: bytes, kind: CodeKind, *, matched_pattern: bool) -> OpaqueToken:
    if kind not in OPAQUE_KINDS:
        raise OpaqueTokenError(f"{kind.value} is not an opaque code kind")
    if not data:
        raise OpaqueTokenError(f"the {kind.value} code is empty")
    return OpaqueToken(kind, data, matched_pattern)
