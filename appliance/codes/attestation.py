"""Mutuelle (AMC) attestation DataMatrix: a tolerant reader driven by a configurable layout.

The layout of these codes is given to vendors under agreement and varies between payers, so the
reader assumes little: a marker recognises the code, fields come in a configured order between
any of the configured separators (or as ``NAME=value`` pairs), dates may be written several ways,
and spaces are ignored. What cannot be read is reported field by field rather than refusing the
whole code, so the pharmacist can still key in the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from appliance.codes.errors import AttestationError

FIELD_NAMES = ("amc_number", "conventions", "csr", "member_number", "valid_from", "valid_to")


@dataclass(frozen=True)
class AttestationLayout:
    """How a payer lays out its attestation code. The defaults are the sandbox payers' layout."""

    marker: str = r"AMC[0-9]{2}"
    """Regular expression matched at the start of the code; it is removed before the fields."""
    separators: tuple[str, ...] = ("\x1d", "|", ";")
    fields: tuple[str, ...] = FIELD_NAMES
    """Field names in the order they appear (names outside FIELD_NAMES are kept as extras)."""
    list_separators: str = ",+/"
    date_formats: tuple[str, ...] = ("%Y%m%d", "%d%m%Y", "%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y")
    required: tuple[str, ...] = ("amc_number", "valid_from", "valid_to")
    _marker: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_marker", re.compile(self.marker))
        except re.error as exc:
            raise ValueError(f"attestation marker {self.marker!r} is not a valid regular expression: {exc}") from None

    def strip_marker(self, text: str) -> str | None:
        match = self._marker.match(text)
        return None if match is None else text[match.end() :]


@dataclass(frozen=True, slots=True)
class AmcAttestation:
    """What a mutuelle attestation says; a field is None when the code did not carry it readably."""

    amc_number: str | None
    conventions: tuple[str, ...]
    csr: str | None
    """Routing criterion (critère secondaire de routage)."""
    member_number: str | None
    valid_from: date | None
    valid_to: date | None
    extras: dict[str, str]
    problems: tuple[str, ...] = ()

    def covers(self, day: date) -> bool:
        return self.valid_from is not None and self.valid_to is not None and self.valid_from <= day <= self.valid_to

    def to_fields(self) -> dict[str, Any]:
        return {
            "amc_number": self.amc_number,
            "conventions": list(self.conventions),
            "csr": self.csr,
            "member_number": self.member_number,
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
        }


def looks_like_attestation(data: bytes, layout: AttestationLayout) -> bool:
    try:
        return layout.strip_marker(data.decode("utf-8")) is not None
    except UnicodeDecodeError:
        return False


def _split(text: str, separators: tuple[str, ...]) -> list[str]:
    pattern = "|".join(re.escape(s) for s in separators)
    return [part.strip() for part in re.split(pattern, text)] if pattern else [text.strip()]


def _date(value: str, formats: tuple[str, ...]) -> date | None:
    compact = value.replace(" ", "")
    for fmt in formats:
        try:
            return datetime.strptime(compact, fmt).date()  # a calendar day, no time zone
        except ValueError:
            continue
    return None


def parse_attestation(data: bytes, layout: AttestationLayout | None = None) -> AmcAttestation:
    """Read an attestation; raises :class:`AttestationError` only when the code is not one at all."""
    layout = layout or AttestationLayout()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AttestationError("attestation code is not text") from None
    body = layout.strip_marker(text)
    if body is None:
        raise AttestationError("not a mutuelle attestation: its marker is missing")
    values: dict[str, str] = {}
    extras: dict[str, str] = {}
    parts = [p for p in _split(body.lstrip("".join(layout.separators)), layout.separators)]
    positional = iter(layout.fields)
    for index, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and name.strip().lower() in layout.fields:
            values[name.strip().lower()] = value.strip()
            continue
        slot = next(positional, None)
        if slot is None:
            if part:
                extras[f"extra_{index}"] = part
        elif slot in FIELD_NAMES:
            values.setdefault(slot, part)
        else:
            extras[slot] = part
    problems: list[str] = []
    for name in layout.required:
        if not values.get(name):
            problems.append(f"attestation lacks {name.replace('_', ' ')}")
    amc = values.get("amc_number") or None
    if amc is not None and not re.fullmatch(r"[0-9]{8,10}", amc):
        problems.append(f"AMC number {amc!r} must be 8 to 10 digits")
    dates: dict[str, date | None] = {}
    for name in ("valid_from", "valid_to"):
        raw = values.get(name)
        dates[name] = _date(raw, layout.date_formats) if raw else None
        if raw and dates[name] is None:
            problems.append(f"attestation {name.replace('_', ' ')} {raw!r} is not a date")
    start, end = dates["valid_from"], dates["valid_to"]
    if start and end and start > end:
        problems.append(f"attestation period ends ({end}) before it starts ({start})")
    conventions = tuple(
        c.strip()
        for c in re.split(f"[{re.escape(layout.list_separators)}]", values.get("conventions", ""))
        if c.strip()
    )
    return AmcAttestation(
        amc_number=amc,
        conventions=conventions,
        csr=values.get("csr") or None,
        member_number=values.get("member_number") or None,
        valid_from=start,
        valid_to=end,
        extras=extras,
        problems=tuple(problems),
    )
