"""The kinds of code the e-lecteur understands and the uniform result the classifier returns."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CodeKind(StrEnum):
    """Names used in the decode command's JSON and in the workflow's expectations."""

    TWO_D_DOC = "2d-doc"
    INS = "ins-datamatrix"
    GS1 = "gs1"
    APCV = "apcv"
    EPRESCRIPTION = "eprescription"
    AMC_ATTESTATION = "amc-attestation"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DecodedCode:
    """What the e-lecteur understood of one scan.

    ``fields`` is JSON-ready; ``payload`` is the typed parser result (None when the code could not be
    parsed at all). A code is valid when its kind is known and nothing is wrong with it.
    """

    kind: CodeKind
    raw: bytes
    fields: dict[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    payload: object | None = None

    @property
    def valid(self) -> bool:
        return self.kind is not CodeKind.UNKNOWN and not self.errors

    def to_json(self) -> dict[str, Any]:
        """The decode command's contract: kind, valid, fields, errors, raw (base64)."""
        return {
            "kind": self.kind.value,
            "valid": self.valid,
            "fields": self.fields,
            "errors": list(self.errors),
            "raw": base64.b64encode(self.raw).decode("ascii"),
        }
