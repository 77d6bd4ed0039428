"""The kiosk's French: what is left for later agrees in gender and number with what it is."""

from __future__ import annotations

import pytest

from appliance.workflow import messages as msg


@pytest.mark.parametrize(
    ("what", "said"),
    [
        ("la recherche INSi", "Hors ligne : la recherche INSi sera complétée au retour du réseau"),
        ("l'ordonnance numérique", "Hors ligne : l'ordonnance numérique sera complétée au retour du réseau"),
        ("les droits AMO (ADRi)", "Hors ligne : les droits AMO (ADRi) seront complétés au retour du réseau"),
        ("les droits mutuelle (IDB)", "Hors ligne : les droits mutuelle (IDB) seront complétés au retour du réseau"),
    ],
)
def test_what_is_completed_later_agrees_with_its_verb(what: str, said: str) -> None:
    assert msg.offline(what) == said


def test_a_phrase_without_its_agreement_is_a_programming_error_not_a_wrong_sentence() -> None:
    with pytest.raises(KeyError):
        msg.offline("le dossier pharmaceutique")
