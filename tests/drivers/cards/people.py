"""Test card holders: NIRs with their real keys, RPPS numbers with their Luhn key."""

from __future__ import annotations

from stdnum import luhn

from appliance.codes.nir import nir_key
from tests.drivers.cards.virtual import CardPerson, VirtualCps, VirtualVitale


def nir(body: str) -> str:
    return body + nir_key(body)


def rpps(body: str) -> str:
    return body + luhn.calc_check_digit(body)


FATHER = CardPerson("MARTIN", "PAUL", "19800512", nir("1800575056123"))
MOTHER = CardPerson("MARTIN", "CLAIRE", "19821103", nir("2821169123045"))
CHILD = CardPerson("MARTIN", "LEA", "20150302", FATHER.nir)
"""A child without a NIR of her own: she carries her father's."""
CORSICAN = CardPerson("ROSSI", "MARIE-ANGE", "19690617", nir("269062A123456"))
TWIN_A = CardPerson("PETIT", "LUCAS", "20190704", nir("2880575056001"))
TWIN_B = CardPerson("PETIT", "NOAH", "20190704", TWIN_A.nir)
PHARMACIST_RPPS = rpps("1000123456")


def family_card(*, vanish_after: int | None = None) -> VirtualVitale:
    """The MARTIN family: father (holder), mother with her own NIR, a child carrying the father's."""
    return VirtualVitale([FATHER, MOTHER, CHILD], vanish_after=vanish_after)


def corsican_card() -> VirtualVitale:
    return VirtualVitale([CORSICAN])


def pharmacist_cps(pin: str = "1234", tries_left: int = 3) -> VirtualCps:
    return VirtualCps(rpps=PHARMACIST_RPPS, last_name="Durand", first_name="Sophie", pin=pin, tries_left=tries_left)
