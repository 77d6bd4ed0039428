"""AIM symbology identifiers (``]d2``, ``]C1``, ``]Q3``) that scanners may prefix to the data."""

from __future__ import annotations

import re

_AIM = re.compile(rb"^\](?P<id>[A-Za-z][0-9A-Za-z])")

GS1_SYMBOLOGIES = frozenset({"]d2", "]C1", "]Q3", "]e0", "]J1"})
"""Identifiers that announce a GS1 message (DataMatrix, GS1-128, QR, DataBar, DotCode)."""


def split_symbology(raw: bytes) -> tuple[str | None, bytes]:
    """Return ``(identifier, data)``; identifier is None when the scan carries none."""
    match = _AIM.match(raw)
    if match is None:
        return None, raw
    return "]" + match.group("id").decode("ascii"), raw[match.end() :]
