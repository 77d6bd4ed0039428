"""INS DataMatrix (ANS format v2.2): the national health identity printed on documents.

Layout: header ``IS01`` followed by 22 ``0`` (26 characters), then fields ``S1``..``S7`` in any order.
Fixed-length fields (S1 matricule 15, S5 sex 1, S6 birth date 10, S7 birth place 5) have no
terminator; variable ones (S2 OID up to 20, S3 birth first names and S4 birth name up to 100 each)
end with <GS>, at their maximum length (no <GS> then: the next field's id follows directly, as in
2D-DOC) or at the end of the data. A <GS> after a value at its maximum length is tolerated.

The code is not signed: the matricule's NIR key is the only integrity check. The OID tells the
register: the INS-NIR OIDs (1.2.250.1.213.1.4.8, and the ANS test and demonstration ones .10 and .11)
carry a definitive NIR of the RNIPP, whose first digit is 1 or 2; the INS-NIA OID (.9) carries a
waiting number (NIA), shaped like a NIR. A provisional number (first digit 7 or 8) under an INS-NIR
OID, a wrong key or an unknown OID is reported as a problem and the code is not valid.
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
    """Which register the matricule comes from, told by the OID (ANS, Référentiel INS)."""

    NIR = "1.2.250.1.213.1.4.8"
    """INS-NIR: the person's NIR in the RNIPP (INSEE)."""
    NIA = "1.2.250.1.213.1.4.9"
    """INS-NIA: a waiting number (numéro identifiant d'attente) until the NIR is certified."""
    TEST = "1.2.250.1.213.1.4.10"
    """INS-NIR of fictitious test patients."""
    DEMO = "1.2.250.1.213.1.4.11"
    """INS-NIR of fictitious demonstration patients."""

    @property
    def carries_nir(self) -> bool:
        """The INS-NIR OIDs (production, test, demonstration): the matricule must be a definitive NIR."""
        return self is not InsOid.NIA


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    fixed: int | None
    max_len: int


_FIELDS: dict[str, _FieldSpec] = {
    "S1": _FieldSpec("matricule", 15, 15),
    "S2": _FieldSpec("oid", None, 20),
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
            # A variable value ends at <GS>, at the end of the data, or at its maximum length.
            limit = min(len(body), pos + spec.max_len)
            end = pos
            while end < limit and body[end] != _GS:
                end += 1
            value = body[pos:end]
            pos = end
            if pos < len(body) and body[pos] == _GS:
                pos += 1
            elif len(value) == spec.max_len and pos < len(body):
                following = body[pos : pos + 2]
                if following not in _FIELDS or following in values or following == field_id:
                    raise InsCodeError(f"INS field {field_id} ({spec.name}) is longer than {spec.max_len} characters")
        values[field_id] = value
    missing = [f"{fid} ({_FIELDS[fid].name})" for fid in _FIELDS if fid not in values]
    if missing:
        raise InsCodeError("INS code lacks " + ", ".join(missing))
    return values


def _nir_under_nir_oid(matricule: str, oid: str) -> str | None:
    """Why this matricule cannot be an INS-NIR, or None: a NIR of the RNIPP starts with 1 (men) or
    2 (women); 7 and 8 start the provisional numbers given while a registration is pending."""
    first = matricule[:1]
    if first in ("1", "2"):
        return None
    if first in ("7", "8"):
        return (
            f"INS matricule starts with {first}: a provisional number, which the INS-NIR OID {oid} cannot "
            "carry (an INS-NIR is a definitive NIR, starting with 1 or 2)"
        )
    return f"INS matricule starts with {first!r}: not a definitive NIR (1 or 2), as the INS-NIR OID {oid} requires"


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
        register: InsOid | None = InsOid(oid)
    except ValueError:
        register = None
        problems.append(f"INS OID {oid!r} is not an INS register (NIR, NIA, test or demo)")
    if register is not None and register.carries_nir:
        problem = _nir_under_nir_oid(matricule, oid)
        if problem:
            problems.append(problem)
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


def _variable(field_id: str, value: str) -> str:
    """A variable field and its terminator: <GS>, except at its maximum length (the next id follows)."""
    return f"{field_id}{value}" + ("" if len(value) >= _FIELDS[field_id].max_len else _GS)


def build_ins_payload(identity: InsIdentity) -> bytes:
    """The payload of an INS DataMatrix for these traits, fields in the ANS order (for samples and tests)."""
    return (
        HEADER
        + (
            f"S1{identity.matricule}{_variable('S2', identity.oid)}{_variable('S3', identity.first_names)}"
            f"{_variable('S4', identity.birth_name)}S5{identity.sex}S6{identity.birth_date:%d-%m-%Y}"
            f"S7{identity.birth_place}"
        ).encode()
    )
