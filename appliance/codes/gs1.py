"""GS1 DataMatrix of medicine boxes: GTIN (with the CIP13 inside), expiry, lot and serial.

Parsing is biip's job; this module turns its results into what the counter needs, with a
:class:`Gs1Error` naming the problem instead of biip's exceptions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import biip
import biip.gs1_prefixes

from appliance.codes.errors import Gs1Error
from appliance.codes.symbology import GS1_SYMBOLOGIES, split_symbology


def _release_company_prefixes() -> None:
    """Let go of biip's table of GS1 company prefixes.

    biip loads the whole GS1 company-prefix trie when it is imported, about 15 MB of Python dicts for the
    life of the process, only to name the company inside a GTIN (``Gtin.company_prefix``). The counter reads
    the CIP13 inside a French medicine's GTIN and never asks whose prefix it is, and the kiosk's memory
    target is 200 MB (issue 15). With the table empty biip answers "prefix unknown" (``company_prefix`` is
    ``None``) and parses everything else as before.
    ``tests/appliance/codes/test_gs1.py`` fails if a biip release moves the table.
    """
    if isinstance(getattr(biip.gs1_prefixes, "_GS1_COMPANY_PREFIX_TRIE", None), dict):
        biip.gs1_prefixes._GS1_COMPANY_PREFIX_TRIE = {}


_release_company_prefixes()

_GS = "\x1d"
_CONFIG = biip.ParseConfig(separator_chars=[_GS])
_LOOKS_GS1 = re.compile(rb"^\x1d?01\d{14}")
_PRINTABLE = re.compile(r"^[\x1d\x20-\x7e]*$")


@dataclass(frozen=True, slots=True)
class MedicineBox:
    """What a box's DataMatrix says about it (falsified-medicines directive data)."""

    gtin: str
    cip13: str | None
    """The French CIP13 code when the GTIN-14 carries one (``0`` + ``3400`` + 9 digits)."""
    expiry: date | None
    """Last day the box may be used; day ``00`` means the end of that month."""
    lot: str | None
    serial: str | None
    symbology: str | None
    elements: tuple[tuple[str, str], ...]
    """Every (AI, value) in the message, in order, for what the counter does not interpret."""

    def to_fields(self) -> dict[str, Any]:
        return {
            "gtin": self.gtin,
            "cip13": self.cip13,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "lot": self.lot,
            "serial": self.serial,
        }


def looks_like_gs1(data: bytes) -> bool:
    """A GS1 symbology prefix, or a message that starts with (01) and 14 digits."""
    symbology, rest = split_symbology(data)
    if symbology in GS1_SYMBOLOGIES:
        return True
    return _LOOKS_GS1.match(rest) is not None


def cip13_of(gtin: str) -> str | None:
    if len(gtin) == 14 and gtin.startswith("03400"):
        return gtin[1:]
    return None


def parse_gs1(data: bytes, *, symbology: str | None = None) -> MedicineBox:
    """Read a medicine box code; raises :class:`Gs1Error` when it is not a usable GS1 message.

    ``symbology`` is the reader's AIM identifier when it is not prefixed to the data.
    """
    prefix, rest = split_symbology(data)
    symbology = prefix or symbology
    try:
        text = rest.decode("ascii")
    except UnicodeDecodeError:
        raise Gs1Error("GS1 code contains bytes that are not ASCII") from None
    if not _PRINTABLE.match(text):
        raise Gs1Error("GS1 code contains control characters other than the group separator")
    text = text.lstrip(_GS).rstrip(_GS)
    if not text:
        raise Gs1Error("GS1 code is empty")
    try:
        result = biip.parse(text, config=_CONFIG)
    except biip.BiipException as exc:
        raise Gs1Error(f"GS1 code cannot be read: {exc}") from None
    except IndexError:  # biip 5.2 indexes past a lone "]" (a cut symbology identifier) instead of refusing it
        raise Gs1Error("GS1 code cannot be read: truncated symbology identifier") from None
    message = result.gs1_message
    if message is None:
        raise Gs1Error(f"GS1 code cannot be read: {result.gs1_message_error}")
    elements = tuple((es.ai.ai, es.value) for es in message.element_strings)
    by_ai: dict[str, Any] = {}
    for es in message.element_strings:
        if es.ai.ai in by_ai:
            raise Gs1Error(f"GS1 code repeats AI ({es.ai.ai})")
        by_ai[es.ai.ai] = es
    gtin_es = by_ai.get("01")
    if gtin_es is None:
        raise Gs1Error("GS1 code has no product code (AI 01, GTIN)")
    if gtin_es.gtin_error:
        raise Gs1Error(f"GS1 product code: {gtin_es.gtin_error}")
    expiry_es = by_ai.get("17")
    expiry = expiry_es.date if expiry_es is not None else None
    return MedicineBox(
        gtin=gtin_es.value,
        cip13=cip13_of(gtin_es.value),
        expiry=expiry,
        lot=by_ai["10"].value if "10" in by_ai else None,
        serial=by_ai["21"].value if "21" in by_ai else None,
        symbology=symbology,
        elements=elements,
    )
