"""Screen states for the screenshot tests: views shaped exactly like ``Counter.view()`` (a test checks
the keys), one per screen and variant, with what each must visibly show."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from appliance.workflow import messages as msg

BASE: dict[str, Any] = {
    "step": "attract",
    "online": True,
    "operator": False,
    "operator_name": None,
    "cps": False,
    "pending_act": None,
    "pharmacist_needed": None,
    "beneficiaries": [],
    "patient": None,
    "identity_choices": 0,
    "identity_choice_list": [],
    "traits_to_confirm": [],
    "traits_differences": [],
    "qualification_prompt": False,
    "identity_doubtful": False,
    "minor": False,
    "documents": [],
    "guardian_documents": [],
    "ins_status": None,
    "rights": {"amo": None, "amc": None},
    "prescription": None,
    "lines": 0,
    "line_list": [],
    "boxes": 0,
    "box_list": [],
    "discrepancies": [],
    "annotation": "",
    "to_pay": None,
    "amounts": None,
    "claim": None,
    "receipt": [],
    "later": [],
    "recent_claims": [],
    "interrupted": None,
    "dp": None,
    "mailbox": False,
    "prescriber_mailbox": False,
}
PATIENT = {"first_names": "MARIE CLAIRE", "birth_name": "DURAND", "birth_date": "12/03/1968"}
AMO = {"source": "adri", "valid": True, "valid_to": "31/12/2029", "ald": False, "c2s": False}
AMC = {"source": "idb", "valid": True, "valid_to": "31/12/2026", "coverage_pct": 100}
RX = {
    "prescriber": "Dr Hélène VIDAL, médecin généraliste",
    "prescribed_on": "10/06/2026",
    "renewals": 2,
    "renewal": 0,
    "degraded": False,
    "confirmed": False,
    "patient": {"first_names": "MARIE", "birth_name": "DURAND", "birth_date": "12/03/1968"},
    "mismatch": [],
    "patient_accepted": False,
}
LINES = [
    {"line": 1, "label": "DOLIPRANE 1000 mg cp B/8", "quantity": 2, "dispensed": 1, "ald": False},
    {"line": 2, "label": "AMOXICILLINE BIOGARAN 1 g cp B/6", "quantity": 1, "dispensed": 1, "ald": False},
]
BOXES = [
    {"name": "DOLIPRANE 1000 mg cp B/8", "cip13": "3400930000120", "serial": "S1", "expiry": "31/05/2027"},
    {"name": "CLAMOXYL 1 g cp B/6", "cip13": "3400930000779", "serial": "S2", "expiry": "30/09/2027"},
]
BOXES[0].update(line=1, substitution=False)
BOXES[1].update(line=2, substitution=True)
GAPS = [
    {"line": 1, "kind": "quantity", "prescribed": 2, "dispensed": 1},
    {"line": 2, "kind": "substitution", "prescribed": "3400930000649", "dispensed": "3400930000779"},
]


WAITING_FOR = msg.WAITING_FOR
"""The core's sentences by pending act: the screens show what the core says."""
ADULT_DOCUMENTS = [
    {"code": "passeport", "label": "Passeport"},
    {"code": "cni", "label": "Carte nationale d'identité"},
    {"code": "titre-sejour", "label": "Titre de séjour"},
]
MINOR_DOCUMENTS = [
    *ADULT_DOCUMENTS,
    {"code": "livret-famille", "label": "Livret de famille"},
    {"code": "acte-naissance", "label": "Extrait d'acte de naissance"},
]
LEA = {"first_names": "LEA", "birth_name": "MARTIN", "birth_date": "14/02/2012"}
HOMONYMS = [
    {"first_names": "NADIA", "birth_name": "PETIT", "sex": "F", "birth_date": "04/07/1990", "birth_place": "13055"},
    {"first_names": "NADIA", "birth_name": "PETIT", "sex": "F", "birth_date": "04/07/1990", "birth_place": "69123"},
]
TRAITS = [{"trait": "birth_name", "label": "Nom de naissance", "on_file": "DURANT", "now": "DURAND"}]
DP_HISTORY = [
    {
        "day": "22/05/2026",
        "label": "CETIRIZINE ARROW 10 mg cp B/7",
        "quantity": 1,
        "pharmacy": "Pharmacie de la Gare, Lyon",
    },
    {
        "day": "09/04/2026",
        "label": "OMEPRAZOLE MYLAN 20 mg gél B/28",
        "quantity": 2,
        "pharmacy": "Pharmacie des Chartrons, Bordeaux",
    },
    {"day": "02/03/2026", "label": "DOLIPRANE 1000 mg cp B/8", "quantity": 2, "pharmacy": "Pharmacie de la Gare, Lyon"},
]
DP_CONSULTED = {"consent": True, "consulted": True, "history": DP_HISTORY}
"""The Dossier Pharmaceutique consulted, as ``Counter.view()`` gives it while an operator is logged in."""
DP_LABELS = ("Dossier pharmaceutique", "CETIRIZINE", "OMEPRAZOLE", "Pharmacie de la Gare", "Chartrons", "22/05/2026")
"""What of the DP the panel shows and no patient screen may."""


def pending(act: str, **changes: Any) -> dict[str, Any]:
    """A view that waits for the pharmacist's act ``act``."""
    return view(pending_act=act, pharmacist_needed=WAITING_FOR[act], **changes)


def document_check(*, minor: bool = False, **changes: Any) -> dict[str, Any]:
    return pending(
        "identity-document",
        step="identity",
        patient=LEA if minor else PATIENT,
        qualification_prompt=True,
        ins_status="RECUP",
        minor=minor,
        documents=MINOR_DOCUMENTS if minor else ADULT_DOCUMENTS,
        guardian_documents=ADULT_DOCUMENTS if minor else [],
        **changes,
    )


def prescription_to_confirm(**changes: Any) -> dict[str, Any]:
    return pending(
        "confirm-prescription",
        step="prescription",
        patient=PATIENT,
        rights={"amo": AMO, "amc": AMC},
        prescription=RX,
        lines=2,
        line_list=[dict(line, dispensed=0) for line in LINES],
        **changes,
    )


OTHER_PATIENT = dict(
    RX,
    renewals=0,
    patient={"first_names": "MARIE", "birth_name": "DURAND", "birth_date": "03/05/1970"},
    mismatch=["Date de naissance"],
)


INTERRUPTED = {
    "claim": 12,
    "time": "11:02",
    "text": "Facture n° 12 enregistrée à 11:02 avant l'arrêt : vérifiez avec le patient.",
}


def _claim(
    number: int, when: str, first: str, last: str, total: int, amo: int, amc: int, **more: Any
) -> dict[str, Any]:
    return {
        "claim": number,
        "day": "15/06/2026",
        "time": when[-5:],
        "when": when,
        "total": total,
        "amo": amo,
        "amc": amc,
        "patient": total - amo - amc,
        "to_pay": total - amo - amc,
        "operator": "alice",
        "initials": f"{first[0]}. {last[0]}.",
        "status": "pending",
        "interrupted": False,
    } | more


CLAIMS = [
    _claim(12, "11:02", "MARIE CLAIRE", "DURAND", 2345, 1500, 500, interrupted=True),
    _claim(11, "10:48", "JEAN PIERRE", "MARTIN", 1196, 837, 359),
    _claim(10, "10:31", "NADIA", "PETIT", 3310, 3310, 0, operator="bruno"),
    _claim(9, "10:05", "HUGO", "LE GOFF", 785, 550, 0),
    _claim(8, "14/06/2026 17:45", "SOPHIE", "BERNARD", 1502, 1052, 450, status="accepted"),
]
"""The last claims as ``Counter.view()`` gives them, newest first; 12 was cut off by a power cut."""


def view(**changes: Any) -> dict[str, Any]:
    state = copy.deepcopy(BASE)
    state.update(changes)
    return state


@dataclass(frozen=True)
class ScreenState:
    name: str
    view: dict[str, Any]
    screen: str
    expect_text: str
    """A text that must be visible (through the widget tree)."""
    button: str | None = None
    """A button (by intent) whose colour is checked at its place."""
    colour: str = "primary"
    message: str | None = None
    accepted: bool = True
    kind: str = "scan"
    panel: str | None = None
    """``operators``, ``pin``, ``work`` or ``claims``: the pharmacist panel on top."""
    busy: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


STATES = [
    ScreenState(
        "attract",
        view(),
        "attract",
        "Présentez votre carte Vitale, votre ordonnance, votre attestation",
        "open_panel",
        "secondary",
    ),
    ScreenState(
        "scan-error",
        view(),
        "attract",
        "Code illisible, réessayez",
        "open_panel",
        "secondary",
        message="Code illisible, réessayez (GS1 code cannot be read)",
        accepted=False,
    ),
    ScreenState(
        "choose",
        view(
            step="choose-beneficiary",
            beneficiaries=[
                {"rank": 1, "first_names": "JEAN PIERRE", "birth_name": "MARTIN"},
                {"rank": 1, "first_names": "SOPHIE", "birth_name": "BERNARD"},
                {"rank": 2, "first_names": "LEA", "birth_name": "MARTIN"},
                {"rank": 3, "first_names": "HUGO", "birth_name": "MARTIN"},
            ],
        ),
        "choose",
        "Lea MARTIN",
        "choose_beneficiary:2",
        message="Choisissez la personne concernée",
    ),
    ScreenState(
        "identity-choices",
        pending("choose-identity", step="identity", identity_choices=2, identity_choice_list=HOMONYMS),
        "identity",
        "Le pharmacien vérifie votre identité…",
        "open_panel",
        "secondary",
    ),
    ScreenState(
        "identity-traits",
        pending(
            "confirm-traits",
            step="identity",
            patient=PATIENT,
            traits_to_confirm=["birth_name"],
            traits_differences=TRAITS,
        ),
        "identity",
        "Le pharmacien vérifie votre identité…",
        "cancel",
        "danger",
    ),
    ScreenState(
        "identity-qualification",
        document_check(),
        "identity",
        "Présentez votre pièce d'identité au pharmacien.",
        "open_panel",
        "secondary",
    ),
    ScreenState(
        "rights",
        view(step="rights", patient=PATIENT, rights={"amo": AMO, "amc": dict(AMC, valid=False, valid_to="31/12/2025")}),
        "rights",
        "Attestation mutuelle expirée le 31/12/2025",
        "continue",
        message="Attestation mutuelle expirée le 31/12/2025",
        accepted=True,
    ),
    ScreenState(
        "prescription",
        prescription_to_confirm(),
        "prescription",
        "Au nom de Marie DURAND, 12/03/1968",
        "open_panel",
        "secondary",
    ),
    ScreenState(
        "prescription-dispensed",
        view(step="rights", patient=PATIENT, rights={"amo": AMO, "amc": AMC}),
        "rights",
        "Cette ordonnance a déjà été délivrée",
        "cancel",
        "danger",
        message="Cette ordonnance a déjà été délivrée",
        accepted=False,
    ),
    ScreenState(
        "dispensation",
        view(
            step="dispensation",
            patient=PATIENT,
            prescription=dict(RX, confirmed=True),
            lines=2,
            line_list=LINES,
            boxes=2,
            box_list=BOXES,
            discrepancies=GAPS,
        ),
        "dispensation",
        "Boîtes scannées : 2",
        "continue",
        message="CLAMOXYL 1 g cp B/6",
    ),
    ScreenState(
        "control",
        pending(
            "validate",
            step="control",
            patient=PATIENT,
            prescription=dict(RX, confirmed=True),
            lines=2,
            line_list=LINES,
            boxes=2,
            box_list=BOXES,
            discrepancies=GAPS,
        ),
        "control",
        "Marie Claire DURAND, 12/03/1968",
        "cancel",
        "danger",
        message="2 écart(s) à contrôler",
    ),
    ScreenState(
        "payment",
        view(
            step="payment",
            patient=PATIENT,
            to_pay=345,
            claim=7,
            amounts={"total": 1234, "amo": 789, "amc": 100, "to_pay": 345},
        ),
        "payment",
        "3,45\u00a0€",
        "close",
        message="À payer : 3,45 €",
        kind="intent:validate",
    ),
    ScreenState(
        "thanks",
        view(receipt=["Facture n° 7", "DOLIPRANE 1000 mg cp B/8 x1 : 1,96 €", "Réglé : 3,45 €"]),
        "thanks",
        "Merci, à bientôt",
        message="Merci, à bientôt",
        kind="intent:close",
    ),
    ScreenState(
        "waiting", view(step="attract"), "waiting", "Un instant, s'il vous plaît", "cancel", "danger", busy=True
    ),
    ScreenState(
        "offline",
        pending(
            "enter-lines",
            step="prescription",
            online=False,
            patient=PATIENT,
            rights={"amo": dict(AMO, source="card"), "amc": None},
            prescription=dict(RX, degraded=True, prescriber="", prescribed_on="", patient=None),
            later=["la recherche INSi", "l'ordonnance numérique"],
        ),
        "prescription",
        "à compléter au retour du réseau : la recherche INSi, l'ordonnance numérique",
        "open_panel",
        "secondary",
        message="Saisissez les lignes de l'ordonnance papier; Hors ligne : l'ordonnance numérique sera complétée au "
        "retour du réseau",
    ),
    ScreenState(
        "panel-operators",
        document_check(),
        "identity",
        "Le pharmacien vérifie votre pièce d'identité…",
        "operator:alice",
        panel="operators",
    ),
    ScreenState(
        "panel-pin",
        pending("validate", step="control", patient=PATIENT),
        "control",
        "Code personnel de alice",
        "pin:ok",
        panel="pin",
    ),
    ScreenState(
        "panel-work",
        pending(
            "validate",
            step="control",
            patient=PATIENT,
            prescription=dict(RX, confirmed=True),
            lines=2,
            line_list=LINES,
            boxes=2,
            box_list=BOXES,
            discrepancies=GAPS,
            annotation="Une seule boîte en stock",
            operator=True,
        ),
        "control",
        "Ligne 1 : 1 boîte(s) délivrée(s) sur 2 prescrite(s)",
        "validate",
        panel="work",
    ),
    ScreenState(
        "panel-homonyms",
        pending("choose-identity", step="identity", identity_choices=2, identity_choice_list=HOMONYMS, operator=True),
        "identity",
        "Nadia PETIT, femme, née le 04/07/1990 (69123)",
        "choose_identity:1",
        message="Plusieurs identités trouvées : le pharmacien choisit",
        panel="work",
    ),
    ScreenState(
        "panel-traits",
        pending(
            "confirm-traits",
            step="identity",
            patient=PATIENT,
            traits_to_confirm=["birth_name"],
            traits_differences=TRAITS,
            operator=True,
        ),
        "identity",
        "Nom de naissance : DURANT (dossier), DURAND (INS)",
        "confirm_traits",
        panel="work",
    ),
    ScreenState(
        "panel-document",
        document_check(operator=True),
        "identity",
        "Pièce d'identité présentée, conforme à l'INS :",
        "document:passeport",
        message="Bonjour alice",
        kind="intent:login",
        panel="work",
    ),
    ScreenState(
        "panel-document-minor",
        document_check(minor=True, operator=True),
        "identity",
        "Acte de naissance",
        "document:livret-famille",
        message="Bonjour alice",
        kind="intent:login",
        panel="work",
    ),
    ScreenState(
        "panel-guardian",
        document_check(minor=True, operator=True),
        "identity",
        "Livret de famille : pièce d'identité du représentant légal",
        "guardian:cni",
        panel="work",
        extra={"guardian_for": "livret-famille"},
    ),
    ScreenState(
        "panel-prescription",
        prescription_to_confirm(operator=True),
        "prescription",
        "2 × DOLIPRANE 1000 mg cp B/8",
        "confirm_prescription",
        message="Ordonnance du 10/06/2026 : 2 ligne(s)",
        panel="work",
    ),
    ScreenState(
        "panel-prescription-patient",
        pending(
            "prescription-patient",
            step="prescription",
            patient=PATIENT,
            prescription=OTHER_PATIENT,
            lines=2,
            line_list=[dict(line, dispensed=0) for line in LINES],
            operator=True,
        ),
        "prescription",
        "Sur l'ordonnance : Marie DURAND, 03/05/1970",
        "accept_prescription_patient",
        message="Ordonnance au nom d'un autre patient : le pharmacien décide",
        panel="work",
    ),
    ScreenState(
        "panel-enter-lines",
        pending(
            "enter-lines",
            step="prescription",
            online=False,
            patient=PATIENT,
            prescription=dict(RX, degraded=True, prescriber="", prescribed_on="", renewals=0, patient=None),
            later=["l'ordonnance numérique"],
            operator=True,
        ),
        "prescription",
        "Ordonnance papier : saisissez les lignes",
        "enter_line:0",
        "secondary",
        panel="work",
    ),
    ScreenState(
        "panel-assign-box",
        pending(
            "assign-box",
            step="dispensation",
            patient=PATIENT,
            prescription=dict(RX, confirmed=True),
            lines=2,
            line_list=[LINES[0], dict(LINES[1], dispensed=0)],
            boxes=2,
            box_list=[BOXES[0], dict(BOXES[1], line=None, substitution=False)],
            operator=True,
        ),
        "dispensation",
        "CLAMOXYL 1 g cp B/6 : à quelle ligne ?",
        "assign_box:2",
        message="CLAMOXYL 1 g cp B/6 : à quelle ligne correspond cette boîte ?",
        panel="work",
    ),
    ScreenState(
        "panel-dp-consent",
        view(
            step="rights",
            patient=PATIENT,
            rights={"amo": AMO, "amc": AMC},
            operator=True,
            dp={"consent": None, "consulted": False, "history": []},
        ),
        "rights",
        "Dossier pharmaceutique : accord du patient ?",
        "dp_consent",
        panel="work",
    ),
    ScreenState(
        "panel-dp",
        view(step="rights", patient=PATIENT, rights={"amo": AMO, "amc": AMC}, operator=True, dp=DP_CONSULTED),
        "rights",
        "Dossier pharmaceutique : 3 délivrance(s)",
        "dp_consult",
        message="Dossier pharmaceutique : 3 délivrance(s)",
        kind="intent:dp_consult",
        panel="work",
    ),
    ScreenState(
        "rights-dp-consulted",
        view(step="rights", patient=PATIENT, rights={"amo": AMO, "amc": AMC}, operator=True, dp=DP_CONSULTED),
        "rights",
        "Assurance Maladie : droits ouverts jusqu'au 31/12/2029",
        "continue",
        message="Dossier pharmaceutique : 3 délivrance(s)",
        kind="intent:dp_consult",
        extra={"unlocked": True, "operator_name": "alice"},
    ),
    ScreenState(
        "prescription-dp-consulted",
        prescription_to_confirm(operator=True, dp=DP_CONSULTED),
        "prescription",
        "Au nom de Marie DURAND, 12/03/1968",
        "open_panel",
        "secondary",
        extra={"unlocked": True, "operator_name": "alice"},
    ),
    ScreenState(
        "attract-after-stop",
        view(interrupted=INTERRUPTED),
        "attract",
        "Présentez votre carte Vitale, votre ordonnance, votre attestation",
        "open_panel",
        "secondary",
        kind="network",
    ),
    ScreenState(
        "panel-recovery",
        view(interrupted=INTERRUPTED),
        "attract",
        INTERRUPTED["text"],
        "operator:alice",
        kind="started",
        panel="operators",
    ),
    ScreenState(
        "panel-claims",
        view(operator=True, recent_claims=CLAIMS, interrupted=INTERRUPTED),
        "attract",
        INTERRUPTED["text"],
        "close_claims",
        "secondary",
        kind="intent:recent_claims",
        panel="claims",
    ),
]
