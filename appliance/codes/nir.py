"""NIR, the French social security number, and its 2-digit key.

The key arithmetic (97 − number mod 97, Corsica 2A→19 and 2B→18 first) comes from python-stdnum;
this module adds what the counter needs on top: precise messages, and telling provisional numbers
(first digit 7 or 8, given while a person's registration is pending) from definitive ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum.fr import nir as stdnum_nir

from appliance.codes.errors import NirError

_SHAPE = re.compile(r"^[1-478][0-9]{4}(?:[0-9]{2}|2A|2B)[0-9]{8}$")
_SEPARATORS = re.compile(r"[ .\-]")


class NirKeyError(NirError):
    """A well-formed NIR whose key does not match its 13 digits (typing or reading mistake)."""

    def __init__(self, given: str, expected: str) -> None:
        super().__init__(f"NIR key {given} does not match, expected {expected}")
        self.given = given
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Nir:
    """A NIR whose key has been checked."""

    number: str
    """The 15 characters: 13 of the number then the 2-digit key."""

    @property
    def body(self) -> str:
        return self.number[:13]

    @property
    def key(self) -> str:
        return self.number[13:]

    @property
    def provisional(self) -> bool:
        """Numbers starting with 7 or 8 are temporary ones, to be replaced by a definitive NIR."""
        return self.number[0] in "78"

    @property
    def corsica(self) -> bool:
        return self.number[5:7] in ("2A", "2B")


def normalise_nir(text: str) -> str:
    """Upper case, spaces, dots and dashes removed: how people and cards write it."""
    return _SEPARATORS.sub("", text).upper()


def nir_key(body: str) -> str:
    """The 2-digit key of a 13-character NIR body (Corsican departments included)."""
    body = normalise_nir(body)
    if len(body) != 13 or not _SHAPE.match(body + "00"):
        raise NirError(f"NIR {body!r} is not 13 characters of a NIR (digits, 2A or 2B for Corsica)")
    return str(stdnum_nir.calc_check_digits(body))


def parse_nir(text: str) -> Nir:
    """Check a 15-character NIR (13 + key).

    Raises :class:`NirKeyError` when only the key is wrong, :class:`NirError` for any other shape.
    """
    number = normalise_nir(text)
    if len(number) != 15:
        raise NirError(f"NIR must have 15 characters (13 + 2-digit key), got {len(number)}")
    if not _SHAPE.match(number):
        raise NirError(
            "NIR is not well formed: it starts with 1, 2, 3, 4, 7 or 8, has digits only "
            "(2A or 2B for a birth in Corsica)"
        )
    expected = nir_key(number[:13])
    if number[13:] != expected:
        raise NirKeyError(number[13:], expected)
    return Nir(number)
