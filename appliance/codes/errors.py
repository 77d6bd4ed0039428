"""The one family of exceptions the code parsers raise on bad input.

Every parser raises a subclass of :class:`CodeError` and nothing else, whatever the bytes:
the drivers and the counter workflow catch this single type and show its message.
Messages are plain words naming what is wrong, for a person at the counter.
"""

from __future__ import annotations


class CodeError(ValueError):
    """Bytes that cannot be read as the expected kind of code."""


class TwoDDocError(CodeError):
    """A damaged or malformed 2D-DOC."""


class InsCodeError(CodeError):
    """A damaged or malformed INS DataMatrix."""


class NirError(CodeError):
    """A NIR (social security number) that is not well formed."""


class Gs1Error(CodeError):
    """A medicine box DataMatrix that is not a valid GS1 message."""


class OpaqueTokenError(CodeError):
    """An apCV or ePrescription code that matches no configured pattern."""


class AttestationError(CodeError):
    """A mutuelle attestation DataMatrix that does not fit the configured layout."""
