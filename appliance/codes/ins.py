"""INS DataMatrix (ANS format v2.2): the national health identity printed on documents.

Layout: header ``IS01`` followed by 22 ``0`` (26 characters), then fields ``S1``..``S7`` in any order.
Fixed-length fields (S1 matricule 15, S5 sex 1, S6 birth date 10, S7 birth place 5) have no
terminator; variable ones (S2 OID, S3 first names, S4 birth name) end with <GS> or at the end of the
data. The code is not signed: the matricule's NIR key is the only integrity check, so a wrong key is
reported and the code is not valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from appliance.codes.errors import InsCodeError, NirError
from appliance.codes.nir import parse_nir

HEADER = b"IS01" + b"0" * 22
_GS = "\x1d"


class InsOid(StrEnum):
    """Which register the matricule comes from, told by the OID."""

    NIR = "1.2.250.1.213.1.4.8"
    NIA = "1.2.250.1.213.1.4.9"
    TEST = "1.2.250.1.213.1.4.10"
    DEMO = "1.2.250.1.213.1.4.11"


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    fixed: int | None
    max_len: int


_FIELDS: dict[str, _FieldSpec] = {
    "S1": _FieldSpec("matricule", 15, 15),
    "S2": _FieldSpec("oid", None, 64),
    "S3": _FieldSpec("first_names", None, 100),
    "S4": _FieldSpec("birth_name", None, 100),
    "S5": _FieldSpec("sex", 1, 1),
    "S6": _FieldSpec("birth_date", 10, 10),
    "S7": _FieldSpec("birth_place", 5, 5),
}
_BIRTH_DATE = re.compile(r"^(\d{2})-(\d{2})-(\d{4})$")
_BIRTH_PLACE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")


@dataclass(frozen=True, slots=True)
class InsIdentity:
    """The five identity traits plus the matricule and its OID, as printed."""

    matricule: str
    oid: str
    first_names: str
    birth_name: str
    sex: str
    birth_date: date
    birth_place: str
    problems: tuple[str, ...] = ()

    @property
    def register(self) -> InsOid | None:
        """NIR, NIA, test or demo matricule; None for an OID the ANS has not defined."""
        try:
            return InsOid(self.oid)
        except ValueError:
            return None

    def to_fields(self) -> dict[str, Any]:
        return {
            "matricule": self.matricule,
            "oid": self.oid,
            "birth_name": self.birth_name,
            "first_names": self.first_names,
            "sex": self.sex,
            "birth_date": self.birth_date.isoformat(),
            "birth_place": self.birth_place,
        }


def looks_like_ins(data: bytes) -> bool:
    return data.startswith(HEADER)


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _split_fields(body: str) -> dict[str, str]:
    values: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        if body[pos] == _GS:  # tolerated: a separator after a fixed field
            pos += 1
            continue
        field_id = body[pos : pos + 2]
        spec = _FIELDS.get(field_id)
        if spec is None:
            raise InsCodeError(f"INS code has an unknown field {field_id!r} at position {pos + len(HEADER)}")
        if field_id in values:
            raise InsCodeError(f"INS code repeats field {field_id} ({spec.name})")
        pos += 2
        if spec.fixed is not None:
            value = body[pos : pos + spec.fixed]
            if len(value) != spec.fixed or _GS in value:
                raise InsCodeError(f"INS field {field_id} ({spec.name}) must have {spec.fixed} characters")
            pos += spec.fixed
        else:
            end = body.find(_GS, pos)
            end = len(body) if end < 0 else end
            value = body[pos:end]
            if len(value) > spec.max_len:
                raise InsCodeError(f"INS field {field_id} ({spec.name}) is longer than {spec.max_len}")
            pos = end + 1
        values[field_id] = value
    missing = [f"{fid} ({_FIELDS[fid].name})" for fid in _FIELDS if fid not in values]
    if missing:
        raise InsCodeError("INS code lacks " + ", ".join(missing))
    return values


def _birth_date(text: str) -> date:
    match = _BIRTH_DATE.match(text)
    if match is None:
        raise InsCodeError(f"INS birth date {text!r} is not DD-MM-YYYY")
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        raise InsCodeError(f"INS birth date {text} is not a calendar date") from None


def parse_ins(data: bytes) -> InsIdentity:
    """Read an INS DataMatrix; raises :class:`InsCodeError` when its layout is broken.

    A wrong matricule key or an OID outside the INS ones is not a layout error: the identity is
    returned with ``problems`` so the pharmacist sees what the code says and why it is refused.
    """
    if not looks_like_ins(data):
        raise InsCodeError("not an INS code: it must start with IS01 followed by 22 zeros")
    values = _split_fields(_text(data[len(HEADER) :]))
    problems: list[str] = []
    matricule = values["S1"]
    oid = values["S2"]
    try:
        parse_nir(matricule)
    except NirError as exc:
        problems.append(str(exc))
    try:
        InsOid(oid)
    except ValueError:
        problems.append(f"INS OID {oid!r} is not an INS register (NIR, NIA, test or demo)")
    sex = values["S5"]
    if sex not in ("M", "F", "I"):
        raise InsCodeError(f"INS sex {sex!r} must be M, F or I")
    place = values["S7"]
    if not _BIRTH_PLACE.match(place):
        raise InsCodeError(f"INS birth place {place!r} is not an INSEE code")
    for fid in ("S3", "S4"):
        if not values[fid].strip():
            raise InsCodeError(f"INS field {fid} ({_FIELDS[fid].name}) is empty")
    return InsIdentity(
        matricule=matricule,
        oid=oid,
        first_names=values["S3"],
        birth_name=values["S4"],
        sex=sex,
        birth_date=_birth_date(values["S6"]),
        birth_place=place,
        problems=tuple(problems),
    )


def build_ins_payload(identity: InsIdentity) -> bytes:
    """The payload of an INS DataMatrix for these traits, fields in the ANS order (for samples and tests)."""
    return (
        HEADER
        + (
            f"S1{identity.matricule}S2{identity.oid}{_GS}S3{identity.first_names}{_GS}"
            f"S4{identity.birth_name}{_GS}S5{identity.sex}S6{identity.birth_date:%d-%m-%Y}"
            f"S7{identity.birth_place}"
        ).encode()
    )
