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
_COMPLETED_LATER = {
    "la recherche INSi": "sera complétée",
    "la vérification INSi": "sera complétée",
    "l'appli carte Vitale": "sera lue",
    "les droits AMO (ADRi)": "seront complétés",
    "les droits mutuelle (IDB)": "seront complétés",
    "les droits mutuelle (DLD)": "seront complétés",
    "l'ordonnance numérique": "sera complétée",
}
"""What the kiosk may leave for later, with the verb agreeing with it (« la recherche … sera complétée »,
« les droits … seront complétés »)."""


def offline(what: str) -> str:
    """The notice for a call left to the outbox: ``what`` is one of the phrases above."""
    return f"Hors ligne : {what} {_COMPLETED_LATER[what]} au retour du réseau"


EXPIRED_BOX = "Boîte périmée le {day}"
SERIAL_AGAIN = "Boîte déjà délivrée (numéro de série {serial})"
PRESCRIPTION_DISPENSED = "Ordonnance déjà délivrée"
PRESCRIPTION_DISPENSED_ELSEWHERE = "Ordonnance déjà délivrée dans une autre pharmacie"
PRESCRIPTION_OTHER_PATIENT = "Ordonnance au nom d'un autre patient : le pharmacien décide"
DP_NEEDS_CARD = "Dossier pharmaceutique : seulement avec la carte Vitale"
DP_AGREED = "Accord du patient pour le dossier pharmaceutique"
DP_DECLINED = "Refus du dossier pharmaceutique enregistré"
DP_NO_CONSENT = "Demandez d'abord l'accord du patient pour le dossier pharmaceutique"
DP_OFFLINE = "Dossier pharmaceutique indisponible hors ligne"
DP_CONSULTED = "Dossier pharmaceutique : {count} délivrance(s)"
NOT_QUALIFIED_MAIL = "Identité non qualifiée : pas de messagerie sécurisée"
RECEIPT_MAILED = "Reçu envoyé dans votre messagerie Mon Espace Santé"
PRESCRIBER_NO_MAILBOX = "Prescripteur sans messagerie sécurisée connue"
PRESCRIBER_SUMMARY = "Synthèse envoyée au prescripteur"
INSI_SEVERAL_UNNAMED = "Plusieurs identités possibles : identité provisoire (précisez le lieu de naissance)"
ACT_NOT_ALLOWED = "Acte réservé au pharmacien"
PROFESSIONAL_NEEDED = "Réservé au pharmacien : identifiez-vous sur l'espace pharmacien"
OPERATOR_TIMEOUT = "Session opérateur fermée après inactivité"
DOCUMENT_NEEDED = "Précisez la pièce d'identité présentée"
DOCUMENT_UNKNOWN = "Pièce d'identité non reconnue"
DOCUMENT_FOR_MINOR = "Livret de famille ou acte de naissance : seulement pour un mineur"
GUARDIAN_NEEDED = "Ajoutez la pièce d'identité du représentant légal"
GUARDIAN_DOCUMENT = "Représentant légal : passeport, carte d'identité ou titre de séjour"
DOCUMENT_CHECKED = "Identité qualifiée ({document})"
DOCUMENT_ABSENT = "Sans pièce : la vérification sera redemandée aux prochaines visites"
DOCUMENT_REFUSED = "Refus du patient enregistré"
DOUBTFUL = "Identité douteuse : ni qualification ni envoi au DMP"
WAITING_FOR = {
    "choose-identity": "Le pharmacien vérifie votre identité…",
    "confirm-traits": "Le pharmacien vérifie votre identité…",
    "identity-document": "Le pharmacien vérifie votre pièce d'identité…",
    "prescription-patient": "Le pharmacien vérifie votre ordonnance…",
    "enter-lines": "Le pharmacien saisit votre ordonnance…",
    "confirm-prescription": "Le pharmacien vérifie votre ordonnance…",
    "assign-box": "Le pharmacien vérifie vos boîtes…",
    "validate": "Le pharmacien contrôle la délivrance…",
}
"""What the patient screen says while the session waits for a professional act (by pending act)."""
AMC_EXPIRED = "Attestation mutuelle expirée le {day}"
NEED_PHARMACIST = "Seul un pharmacien peut valider"
CPS_UNKNOWN = "RPPS inconnu de cette pharmacie : demandez l'enregistrement de votre RPPS"
CPS_NEEDED = "Validation sans code réservée au pharmacien connecté par sa carte CPS"
PIN_WRONG = "Code personnel incorrect ({left} essai(s) restant(s))"
LOCKED = "Code bloqué jusqu'à {until} : connectez-vous avec votre carte CPS"
NOT_QUALIFIED = "Identité non qualifiée : pas d'envoi au DMP"
NO_OPERATOR_FOR_CLAIMS = "Identifiez-vous pour voir les dernières factures"
CLAIMS_DURING_SESSION = "Terminez la session en cours pour voir les dernières factures"
INTERRUPTED = "Facture n° {claim} enregistrée à {time} avant l'arrêt : vérifiez avec le patient."
