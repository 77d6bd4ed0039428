"""A NIR is accepted only with its right key; Corsica and provisional numbers are recognised."""

import pytest

from appliance.codes.errors import NirError
from appliance.codes.nir import NirKeyError, nir_key, parse_nir


def test_key_is_97_minus_the_number_modulo_97() -> None:
    body = "1850375123456"
    assert nir_key(body) == f"{97 - int(body) % 97:02d}"


def test_a_nir_with_its_key_is_accepted_whatever_the_spacing() -> None:
    nir = parse_nir("2 82 08 75 056 123 39")
    assert nir.number == "282087505612339"
    assert (nir.body, nir.key) == ("2820875056123", "39")
    assert not nir.provisional


def test_a_wrong_key_names_the_key_expected() -> None:
    with pytest.raises(NirKeyError) as err:
        parse_nir("185037512345600")
    assert str(err.value) == "NIR key 00 does not match, expected 41"
    assert err.value.expected == "41"


@pytest.mark.parametrize(
    ("number", "substitute"),
    [("253072A07300443", "19"), ("253072B07300470", "18")],
)
def test_corsican_departments_count_as_19_and_18_for_the_key(number: str, substitute: str) -> None:
    nir = parse_nir(number)
    assert nir.corsica
    numeric = number[:5] + substitute + number[7:13]
    assert nir.key == f"{97 - int(numeric) % 97:02d}"


@pytest.mark.parametrize("first", ["7", "8"])
def test_numbers_starting_with_7_or_8_are_provisional(first: str) -> None:
    body = first + "850375123456"
    assert parse_nir(body + nir_key(body)).provisional


@pytest.mark.parametrize(
    "text",
    ["", "18503751234", "1850375123456789", "585037512345641", "18503X5123456 41", "253072C07300443"],
)
def test_malformed_numbers_are_refused_with_a_nir_error(text: str) -> None:
    with pytest.raises(NirError):
        parse_nir(text)
