"""What the kiosk says, in French: short sentences a person at the counter understands."""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def _counter_zone() -> tzinfo:
    """Metropolitan French time for clock times said to people; UTC if the system has no tz database
    (a time an hour or two off is better than a kiosk that does not start)."""
    try:
        return ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:
        return UTC


COUNTER_ZONE = _counter_zone()


def fr_date(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def fr_time(at: float) -> str:
    """A moment (Unix time) as the pharmacy's wall clock shows it: ``HH:MM``."""
    return datetime.fromtimestamp(at, tz=COUNTER_ZONE).strftime("%H:%M")


def fr_day(at: float) -> str:
    """The pharmacy's calendar day of a moment (Unix time): ``JJ/MM/AAAA``."""
    return datetime.fromtimestamp(at, tz=COUNTER_ZONE).strftime("%d/%m/%Y")


def euros(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d} €"


UNREADABLE = "Code illisible, réessayez"
NOT_NOW = "Ce n'est pas le moment : {what}"
UNKNOWN_CODE = "Code non reconnu"
EXPECTED = {
    "attract": "présentez la carte Vitale ou l'appli carte Vitale",
    "choose-beneficiary": "choisissez la personne concernée",
    "identity": "l'identité est à confirmer par le pharmacien",
    "rights": "scannez l'attestation mutuelle ou l'ordonnance",
    "prescription": "scannez l'ordonnance ou confirmez-la",
    "dispensation": "scannez les boîtes délivrées",
    "control": "le pharmacien valide la délivrance",
    "payment": "la délivrance est terminée",
}
OFFLINE = "Hors ligne : {what} sera complété au retour du réseau"
EXPIRED_BOX = "Boîte périmée le {day}"
SERIAL_AGAIN = "Boîte déjà délivrée (numéro de série {serial})"
PRESCRIPTION_DISPENSED = "Cette ordonnance a déjà été délivrée"
AMC_EXPIRED = "Attestation mutuelle expirée le {day}"
NEED_PHARMACIST = "Seul un pharmacien peut valider"
CPS_UNKNOWN = "Carte CPS inconnue : demandez l'enregistrement de votre RPPS"
CPS_NEEDED = "Validation sans code réservée au pharmacien connecté par sa carte CPS"
PIN_WRONG = "Code personnel incorrect ({left} essai(s) restant(s))"
LOCKED = "Compte bloqué jusqu'à {until}"
NOT_QUALIFIED = "Identité non qualifiée : pas d'envoi au DMP"
NO_OPERATOR_FOR_CLAIMS = "Identifiez-vous pour voir les dernières factures"
CLAIMS_DURING_SESSION = "Terminez la session en cours pour voir les dernières factures"
INTERRUPTED = "Facture n° {claim} enregistrée à {time} avant l'arrêt : vérifiez avec le patient."
