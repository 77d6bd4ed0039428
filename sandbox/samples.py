"""Sample codes as a patient and a pharmacist would present them, for the demo and the tests.

Every identity here is fictitious and uses the test or demo INS registers; the opaque tokens follow
the sandbox patterns of :mod:`appliance.codes.opaque`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from appliance.codes.ins import InsIdentity, InsOid, build_ins_payload
from appliance.codes.nir import nir_key

GS = "\x1d"


@dataclass(frozen=True, slots=True)
class SampleCode:
    name: str
    """File stem of its image."""
    label: str
    """What a person holds out, in the demo transcript."""
    payload: bytes
    symbol: Literal["qr", "datamatrix"]
    gs1: bool = False
    expect_valid: bool = True


def ins_identity(body13: str, *, first_names: str, birth_name: str, sex: str, born: date, place: str) -> InsIdentity:
    """A test-register INS identity whose matricule key is computed."""
    return InsIdentity(
        matricule=body13 + nir_key(body13),
        oid=InsOid.TEST.value,
        first_names=first_names,
        birth_name=birth_name,
        sex=sex,
        birth_date=born,
        birth_place=place,
    )


def gs1_box(gtin: str, expiry: str, lot: str, serial: str) -> bytes:
    """Element strings of a medicine box DataMatrix, <GS> after the variable-length lot."""
    return f"01{gtin}17{expiry}10{lot}{GS}21{serial}".encode("ascii")


MARIE = ins_identity(
    "2820875056123",
    first_names="MARIE CLAIRE",
    birth_name="DURAND",
    sex="F",
    born=date(1982, 8, 19),
    place="75056",
)
PAUL = ins_identity(
    "1750599350042", first_names="PAUL", birth_name="LE GOFF", sex="M", born=date(1975, 5, 2), place="99350"
)


def basic_samples() -> list[SampleCode]:
    """One code of each kind the counter reads, plus damaged ones, except 2D-DOC (see sandbox.demo)."""
    wrong_key = build_ins_payload(PAUL).replace(PAUL.matricule.encode(), PAUL.matricule[:13].encode() + b"00")
    return [
        SampleCode("apcv", "Appli carte Vitale QR", b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE", "qr"),
        SampleCode("eprescription", "ordonnance numérique QR", b"EP7K2Q-9XWM-4TDA-LR8C", "qr"),
        SampleCode("ins", "INS DataMatrix (Marie Durand)", build_ins_payload(MARIE), "datamatrix"),
        SampleCode("ins-wrong-key", "INS DataMatrix with a wrong key", wrong_key, "datamatrix", expect_valid=False),
        SampleCode(
            "box-doliprane",
            "medicine box GS1 DataMatrix",
            gs1_box("03400930000120", "270500", "AB12", "SN0000123456"),
            "datamatrix",
            gs1=True,
        ),
        SampleCode(
            "amc-attestation",
            "mutuelle attestation DataMatrix",
            f"AMC01{GS}88888888{GS}SP,ISANTE{GS}CSR01{GS}0012345678{GS}20260101{GS}20261231".encode(),
            "datamatrix",
        ),
        SampleCode("unknown", "a loyalty card QR", b"https://example.invalid/fidelite/42", "qr", expect_valid=False),
    ]


def twoddoc_samples() -> list[SampleCode]:
    """A proof of address (2D-DOC) signed by the sandbox CA, and a forgery of it."""
    from sandbox.twoddoc_issuer import issue_2d_doc

    proof = issue_2d_doc(
        [
            ("10", "12 RUE DES LILAS"),
            ("12", "MARIE CLAIRE"),
            ("13", "DURAND"),
            ("24", "75011"),
            ("25", "PARIS"),
        ],
        doc_type="01",
        version="04",
        perimeter="01",
        country="FR",
        issue_date=date(2026, 10, 1),
        signature_date=date(2026, 10, 2),
    )
    forged = proof.replace(b"DURAND", b"DUPONT")
    return [
        SampleCode("2ddoc-address", "2D-DOC proof of address", proof, "datamatrix"),
        SampleCode("2ddoc-forged", "2D-DOC with a changed name", forged, "datamatrix", expect_valid=False),
    ]


def all_samples() -> list[SampleCode]:
    return basic_samples() + twoddoc_samples()
