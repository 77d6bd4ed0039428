"""View models: what the kiosk's screens show, as Kivy properties, computed from the core's projection.

They hold no business rule: every decision is the core's (``Counter.handle``); they turn its
``view()`` into French sentences and lists the kv screens bind to, and turn touches into intents.
They are plain EventDispatchers, so they are tested without a window; time comes from an injected
monotonic clock and :meth:`KioskViewModel.refresh`, which the app calls from the Kivy clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from kivy.event import EventDispatcher
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.utils import escape_markup

from appliance.workflow import messages as msg
from ui.controller import QUIET_KINDS, Result

SCREENS = {
    "attract": "attract",
    "choose-beneficiary": "choose",
    "identity": "identity",
    "rights": "rights",
    "prescription": "prescription",
    "dispensation": "dispensation",
    "control": "control",
    "payment": "payment",
}
"""Workflow step -> screen; ``thanks`` and ``waiting`` are the kiosk's own."""

WAITING_LABELS = {
    "scan": "Lecture du code et interrogation du téléservice…",
    "card-inserted": "Lecture de la carte Vitale…",
    "intent:choose_beneficiary": "Recherche de l'identité (INSi)…",
    "intent:validate": "Validation et facturation…",
    "intent:confirm_prescription": "Enregistrement de l'ordonnance…",
    "intent:login": "Vérification du code personnel…",
    "intent:cps_login": "Vérification du code de la carte CPS…",
    "intent:psc_login": "Connexion e-CPS…",
    "intent:dp_consult": "Consultation du dossier pharmaceutique…",
}
SEX = {"M": "homme", "F": "femme"}
BORN = {"M": "né le", "F": "née le"}
"""Agreement with the sex INSi returned; without one, the date is said without a participle."""
SHORT_DOCUMENTS = {"cni": "Carte d'identité", "acte-naissance": "Acte de naissance"}
"""Document labels short enough for a button two lines high (the core's label otherwise)."""
FOR_MINOR_ONLY = frozenset({"livret-famille", "acte-naissance"})
"""A minor's documents that come with their legal guardian's identity document."""
DOCUMENT_OUTCOMES = (
    ("absent", "Pas de pièce", "secondary"),
    ("refused", "Refus du patient", "secondary"),
    ("contradicts", "Pièce non conforme", "danger"),
)
"""The other answers to the document check, beside the documents (``document_<code>`` intents)."""
PATIENT_HINTS = {"identity-document": "Présentez votre pièce d'identité au pharmacien."}
"""What the patient can do meanwhile, under the "the pharmacist checks…" sentence."""
ACT_TITLES = {
    "choose-identity": "Plusieurs identités INS : choisissez celle du patient",
    "confirm-traits": "L'INS diffère du dossier : vérifiez les traits",
    "identity-document": "Pièce d'identité présentée, conforme à l'INS :",
    "prescription-patient": "Ordonnance au nom d'un autre patient ?",
    "enter-lines": "Ordonnance papier : saisissez les lignes",
    "assign-box": "Boîte à affecter à une ligne",
    "validate": "Délivrance à valider",
}
"""The pharmacist panel's heading for what the session waits for (``pending_act``)."""
LIVE_KEYS = ("online", "later", "operator", "operator_name", "cps", "recent_claims", "interrupted")
"""What a refused event may still change in the projection: the network and the operator's login
(it can end by itself), never the session, so the screens stay where they were."""
ANNOTATIONS = ("Une seule boîte en stock", "Substitution par un générique", "Patient informé de l'écart")
"""Annotations the pharmacist can add with one touch (no keyboard at the counter)."""
PANEL_MESSAGES = frozenset({"intent:dp_consent", "intent:dp_consult"})
"""Results whose message is the pharmacist's only (the DP's answer): cleared when the panel closes."""
DP_BESIDE = frozenset({"", "confirm-prescription"})
"""Pending acts beside which the panel shows the « Dossier pharmaceutique » section: when nothing
waits, and before a prescription is confirmed (not while the pharmacist settles an identity, a
prescription's patient, paper lines (offline: no DP anyway), a box or the validation)."""


class Actions(Protocol):
    """What the view model asks of the core (the :class:`ui.controller.KioskController`)."""

    def intent(self, name: str, **args: Any) -> None: ...

    def claim_shown(self, claim: int) -> None: ...


class EcpsActions(Protocol):
    """The e-CPS login as the panel sees it (:class:`ui.ecps.EcpsLogin`)."""

    def start(self, rpps: str, listener: Any) -> None: ...

    def cancel(self) -> None: ...


class PinPad(EventDispatcher):  # type: ignore[misc]
    """The on-screen PIN pad: digits are kept out of every property, only their count is shown.

    The same pad types an RPPS number for the e-CPS login (``masked=False``: an RPPS is no secret, the
    person checks the 11 digits); a PIN pad is always masked and never switches."""

    mask = StringProperty("")
    length = NumericProperty(0)

    def __init__(self, *, max_length: int = 8, masked: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._digits = ""
        self.max_length = max_length
        self.masked = masked

    def press(self, digit: str) -> None:
        if digit.isdigit() and len(digit) == 1 and len(self._digits) < self.max_length:
            self._digits += digit
            self._show()

    def erase(self) -> None:
        self._digits = self._digits[:-1]
        self._show()

    def take(self) -> str:
        """The PIN typed, once: the pad forgets it."""
        pin, self._digits = self._digits, ""
        self._show()
        return pin

    def clear(self) -> None:
        self._digits = ""
        self._show()

    def _show(self) -> None:
        self.length = len(self._digits)
        self.mask = "•" * len(self._digits) if self.masked else self._digits


class KioskViewModel(EventDispatcher):  # type: ignore[misc]
    """Everything the patient screens and the pharmacist panel show."""

    screen = StringProperty("attract")
    step = StringProperty("attract")
    # feedback
    message = StringProperty("")
    message_ok = BooleanProperty(True)
    busy = BooleanProperty(False)
    waiting = BooleanProperty(False)
    waiting_label = StringProperty("")
    progress = NumericProperty(0.0)
    cancelling = BooleanProperty(False)
    # network
    online = BooleanProperty(True)
    offline_text = StringProperty("")
    # patient
    greeting = StringProperty("")
    patient_name = StringProperty("")
    beneficiaries = ListProperty([])
    patient_birth_date = StringProperty("")
    """JJ/MM/AAAA, beside the name on the control screen and the panel."""
    identity_title = StringProperty("")
    identity_choices = ListProperty([])
    traits_differences = ListProperty([])
    qualification_prompt = BooleanProperty(False)
    identity_doubtful = BooleanProperty(False)
    minor = BooleanProperty(False)
    documents = ListProperty([])
    """The document check's buttons on the panel: each document allowed, then the other answers."""
    guardian_documents = ListProperty([])
    guardian_for = StringProperty("")
    """The minor's document (livret de famille, acte de naissance) chosen, waiting for the guardian's."""
    # what the session waits for from the pharmacist
    pending_act = StringProperty("")
    pharmacist_needed = StringProperty("")
    """The patient screen's sentence while the pharmacist acts (« Le pharmacien vérifie… »)."""
    patient_hint = StringProperty("")
    amo_text = StringProperty("")
    amo_ok = BooleanProperty(False)
    amc_text = StringProperty("")
    amc_ok = BooleanProperty(False)
    prescription_title = StringProperty("")
    prescription_degraded = BooleanProperty(False)
    prescription_patient = StringProperty("")
    """Who the prescription is written for, as written on it (name and birth date)."""
    prescription_rows = ListProperty([])
    """The panel's comparison when that patient differs from the identified one."""
    renewals = NumericProperty(0)
    renewal = NumericProperty(0)
    lines = ListProperty([])
    boxes = ListProperty([])
    unassigned_box = StringProperty("")
    unassigned_serial = StringProperty("")
    discrepancies = ListProperty([])
    annotation = StringProperty("")
    to_pay_text = StringProperty("")
    amount_details = ListProperty([])
    receipt = ListProperty([])
    # pharmacist panel
    panel_open = BooleanProperty(False)
    unlocked = BooleanProperty(False)
    operator_name = StringProperty("")
    operators = ListProperty([])
    pin_for = StringProperty("")
    """``login``, ``cps`` or ``validate`` while the PIN pad is up; empty otherwise."""
    cps_holder = StringProperty("")
    """Name on the CPS in the reader (empty without one): the pad then asks that card's PIN."""
    cps_open = BooleanProperty(False)
    """The panel was unlocked by a CPS: Valider needs no PIN until the card leaves."""
    pin = ObjectProperty(None, rebind=True)
    """The pad on screen: the PIN pad, or the RPPS pad while ``pin_for`` is ``rpps``."""
    ecps_ready = BooleanProperty(False)
    """An e-CPS login (Pro Santé Connect) is wired: the panel offers it."""
    ecps_possible = BooleanProperty(False)
    """The operator chosen has an RPPS on record: « e-CPS (téléphone) » can log them in."""
    ecps_waiting = BooleanProperty(False)
    """The professional's phone was asked: the panel says « Validez sur votre téléphone… »."""
    ecps_name = StringProperty("")
    ecps_code = StringProperty("")
    """The binding message, shown on the phone and on the panel (empty until the provider accepted)."""
    products = ListProperty([])
    """(label, cip13) the pharmacist can enter in degraded mode."""
    work_title = StringProperty("")
    """The work page's heading: the patient, then what to do."""
    work_actions = ListProperty([])
    """The work page's buttons (``intent``, ``text``, ``kind``, ``disabled``), for the step and act."""
    claims_open = BooleanProperty(False)
    """The panel shows "Dernières factures" (unlocked only)."""
    recent_claims = ListProperty([])
    """Rows of that list (``text``, ``detail``, ``gap`` for the bill a stop hid from its patient)."""
    recovery_text = StringProperty("")
    """The panel's banner when the kiosk started after a bill its patient never saw (pharmacist only)."""
    dp_shown = BooleanProperty(False)
    """The panel's « Dossier pharmaceutique » section is up (unlocked, a patient identified)."""
    dp_title = StringProperty("")
    dp_actions = ListProperty([])
    """Its buttons: the patient's answer (« Le patient accepte » / « Refuse »), then « Consulter »."""
    dp_rows = ListProperty([])
    """The DP's dispensations (day, quantity × product, pharmacy): panel only, never a patient screen."""

    def __init__(
        self,
        actions: Actions | None = None,
        *,
        now: Callable[[], float] = time.monotonic,
        thanks_s: float = 8.0,
        banner_s: float = 8.0,
        waiting_after_s: float = 0.25,
        expected_call_s: float = 2.0,
        panel_lock_s: float = 90.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.actions = actions
        self.verify_cps: Callable[[str], None] | None = None
        """Given the PIN typed for the CPS in the reader, has the card check it off the UI thread and
        sends ``cps_login`` only if the card accepted it (the composition root wires the reader)."""
        self.pin = self._pin_pad = PinPad()
        self._rpps_pad = PinPad(max_length=11, masked=False)
        self.ecps: EcpsActions | None = None
        """The e-CPS login (:class:`ui.ecps.EcpsLogin`), wired by the composition root with ``ecps_ready``."""
        self.rpps_of: dict[str, str] = {}
        """Operator name -> RPPS on record (``set_operator_rpps``)."""
        self._ecps_from_pad = False
        self.now = now
        self.thanks_s, self.banner_s = thanks_s, banner_s
        self.waiting_after_s, self.expected_call_s = waiting_after_s, expected_call_s
        self.panel_lock_s = panel_lock_s
        self._pending = 0
        self._busy_since = 0.0
        self._message_until = 0.0
        self._thanks_until = 0.0
        self._panel_touched = 0.0
        self._view: dict[str, Any] = {}
        self._applied: list[Callable[[Result], None]] = []
        self.results = 0
        """How many results were applied (the benchmark and tests wait on it)."""
        self.last_result: Result | None = None
        self._unreported_claim: int | None = None
        self._reported_claim: int | None = None
        self._opened_for_act = False
        self._panel_message = False
        """The banner says what the Dossier Pharmaceutique answered: gone when the panel closes."""
        self.bind(unlocked=self._show_work, cps_open=self._show_work, guardian_for=self._show_work)
        self._applied.append(self._ecps_result)
        self.bind(unlocked=self._show_dp, pending_act=self._show_dp, step=self._show_dp)

    # ------------------------------------------------------------------ results from the core
    def began(self, kind: str) -> None:
        if self._pending == 0:
            self._busy_since = self.now()
            self.progress = 0.0
        self._pending += 1
        self.busy = True
        self.waiting_label = WAITING_LABELS.get(kind.split(":")[0] if kind == "scan" else kind, "Un instant…")

    def finished(self, result: Result) -> None:
        if result.kind not in QUIET_KINDS:
            self._pending = max(0, self._pending - 1)
        self.results += 1
        self.last_result = result
        if self.cancelling and result.kind != "intent:cancel":
            self._settle_busy()
            return  # the session is being cancelled: show nothing of it
        if result.kind == "intent:cancel":
            self.cancelling = False
        self._settle_busy()
        self._apply(result)
        for callback in self._applied:
            callback(result)

    def crashed(self, kind: str, error: BaseException) -> None:
        """A bug in a job: say so plainly and keep the kiosk alive."""
        if kind not in QUIET_KINDS:
            self._pending = max(0, self._pending - 1)
        self.cancelling = False
        self._say("Erreur interne : réessayez ou appelez le pharmacien", ok=False)
        self._settle_busy()

    def on_applied(self, callback: Callable[[Result], None]) -> None:
        """Call ``callback`` after each result is shown (the benchmark's scan-to-screen probe)."""
        self._applied.append(callback)

    def _settle_busy(self) -> None:
        if self._pending == 0:
            self.busy = False
            self.waiting = False
            self.progress = 0.0

    def _say(self, text: str | None, *, ok: bool) -> None:
        self.message = text or ""
        self.message_ok = ok
        self._panel_message = False
        self._message_until = self.now() + self.banner_s if text else 0.0

    def _apply(self, result: Result) -> None:
        view, outcome = result.view, result.outcome
        if not outcome.accepted and self._view:
            # refused: the core changed nothing of the session, so the screen stays where it was
            view = {**self._view, **{key: view[key] for key in LIVE_KEYS if key in view}}
        previous = self.step
        self._view = view
        later = [str(x) for x in view.get("later", [])]
        if result.kind == "intent:logout" and outcome.accepted:
            pass  # the lock already said why (card pulled out, inactivity, Verrouiller)
        elif outcome.message or result.kind == "scan" or result.kind.startswith("intent:"):
            # a touch or a scan without words clears an old message; a tick or a card pulled out does not
            self._say(_plain(outcome.message, offline_shown=bool(later)), ok=outcome.accepted)
            if result.kind in PANEL_MESSAGES:  # the DP's answer: said on the open panel only
                self._panel_message = True
                if not self.panel_open:
                    self._say(None, ok=True)
        if result.kind == "card-removed":
            self.card_removed()
        if self.unlocked and "operator" in view and not view["operator"]:
            self._logged_out()  # the core ended the login (inactivity): the panel follows
        self.step = str(view["step"])
        self.online = bool(view.get("online", True))
        if not self.online or later:
            head = "Hors ligne" if not self.online else "Réseau revenu"
            self.offline_text = f"{head} — à compléter au retour du réseau : {', '.join(later)}" if later else head
        else:
            self.offline_text = ""
        if result.kind == "intent:close" and outcome.accepted:
            self.receipt = [str(line).replace(" €", NBSP + "€") for line in view.get("receipt", [])]
            self._thanks_until = self.now() + self.thanks_s
        elif self.step != "attract" or result.kind == "intent:cancel" or self._timed_out(result):
            self._thanks_until = 0.0
            self.receipt = []
        self._show_patient(view)
        self._show_claims(view)
        if self.step != previous and self.pin_for == "validate":
            self.close_pin()
        self._show_pending(view)
        self._show_dp()
        if self.step == "payment" and previous != "payment":
            self.close_panel()  # validated: the patient sees what they owe
        claim = view.get("claim")
        if self.step == "payment" and claim is not None and claim != self._reported_claim:
            self._unreported_claim = int(claim)
        if result.kind == "started" and self.recovery_text:
            self.open_panel()  # straight to the pharmacist: a bill may not have reached its patient
        self._choose_screen()

    def _show_claims(self, view: dict[str, Any]) -> None:
        """The pharmacist's list and the start-up banner; neither is bound to a patient screen."""
        interrupted = view.get("interrupted")
        self.recovery_text = str(interrupted["text"]) if interrupted else ""
        shown = self.panel_open and self.unlocked  # other patients' names only while the list can be up
        self.recent_claims = [_claim_row(c) for c in view.get("recent_claims", [])] if shown else []
        if self.step != "attract" or not shown:
            self.claims_open = False

    @staticmethod
    def _timed_out(result: Result) -> bool:
        return result.kind == "tick" and bool(result.outcome.message)

    def _show_patient(self, view: dict[str, Any]) -> None:
        patient = view.get("patient")
        self.greeting = f"Bonjour {_first_name(patient['first_names'])}" if patient else ""
        self.patient_name = f"{_title(patient['first_names'])} {patient['birth_name']}" if patient else ""
        self.patient_birth_date = str(patient.get("birth_date") or "") if patient else ""
        self.beneficiaries = [
            {"index": i, "text": f"{_title(b['first_names'])} {b['birth_name']}"}
            for i, b in enumerate(view.get("beneficiaries", []))
        ]
        self._show_identity(view)
        self._show_rights(view.get("rights") or {})
        self._show_prescription(view)
        amounts = view.get("amounts")
        if amounts is None:
            self.to_pay_text, self.amount_details = "", []
        else:
            self.to_pay_text = "Rien à payer" if amounts["to_pay"] == 0 else _euros(amounts["to_pay"])
            self.amount_details = [
                f"Total : {_euros(amounts['total'])}",
                f"Payé par l'Assurance Maladie : {_euros(amounts['amo'])}",
                f"Payé par la mutuelle : {_euros(amounts['amc'])}",
            ]
            if view.get("mailbox"):  # queued with the claim, for a qualified INS
                self.amount_details = [*self.amount_details, msg.RECEIPT_MAILED]

    def _show_identity(self, view: dict[str, Any]) -> None:
        choices = view.get("identity_choice_list", [])
        self.identity_choices = [{"index": i, "text": _identity_choice(c)} for i, c in enumerate(choices)]
        self.traits_differences = [
            {"text": f"{d['label']} : {d['on_file']} (dossier), {d['now']} (INS)", "gap": True}
            for d in view.get("traits_differences", [])
        ]
        self.qualification_prompt = bool(view.get("qualification_prompt"))
        self.identity_doubtful = bool(view.get("identity_doubtful"))
        self.minor = bool(view.get("minor"))
        documents = [
            {"index": d["code"], "text": SHORT_DOCUMENTS.get(d["code"], d["label"])} for d in view.get("documents", [])
        ]
        if documents:
            documents += [
                {"index": code, "text": text, "kind": kind, "intent": f"document_{code}"}
                for code, text, kind in DOCUMENT_OUTCOMES
            ]
        self.documents = documents
        guardian = [
            {"index": d["code"], "text": SHORT_DOCUMENTS.get(d["code"], d["label"])}
            for d in view.get("guardian_documents", [])
        ]
        self.guardian_documents = guardian + (
            [{"index": "back", "text": "Autre pièce", "kind": "secondary"}] if guardian else []
        )
        self.identity_title = self.greeting or "Vérification de votre identité"

    def _show_rights(self, rights: dict[str, Any]) -> None:
        amo, amc = rights.get("amo"), rights.get("amc")
        if amo is None:
            self.amo_text, self.amo_ok = "Assurance Maladie : droits non vérifiés", False
        elif amo["valid"]:
            extra = " (C2S)" if amo.get("c2s") else (" (ALD)" if amo.get("ald") else "")
            self.amo_text, self.amo_ok = f"Assurance Maladie : droits ouverts jusqu'au {amo['valid_to']}{extra}", True
        else:
            self.amo_text, self.amo_ok = f"Assurance Maladie : droits fermés le {amo['valid_to']}", False
        if amc is None:
            self.amc_text, self.amc_ok = "Mutuelle : scannez votre attestation", False
        elif amc["valid"]:
            self.amc_text = f"Mutuelle : prise en charge jusqu'au {amc['valid_to']}"
            self.amc_ok = True
        else:
            self.amc_text, self.amc_ok = msg.AMC_EXPIRED.format(day=amc["valid_to"]), False

    def _show_prescription(self, view: dict[str, Any]) -> None:
        rx = view.get("prescription")
        if rx is None:
            self.prescription_title, self.prescription_degraded = "", False
            self.renewals = self.renewal = 0
        elif rx["degraded"]:
            self.prescription_title = "Ordonnance papier : le pharmacien saisit les lignes"
            self.prescription_degraded = True
            self.renewals, self.renewal = 0, int(rx["renewal"])
        else:
            prescriber = str(rx.get("prescriber", "")).split(",")[0]
            self.prescription_title = f"Ordonnance du {rx['prescribed_on']}" + (f", {prescriber}" if prescriber else "")
            self.prescription_degraded = False
            self.renewals = int(rx["renewals"])
            if not rx["confirmed"]:
                self.renewal = min(self.renewal, self.renewals)
            else:
                self.renewal = int(rx["renewal"])
        self._show_prescription_patient(rx)
        gaps = {(d.get("line"), d["kind"]) for d in view.get("discrepancies", [])}
        self.lines = [
            {
                "text": f"{line['quantity']} × {line['label']}",
                "done": f"{line['dispensed']}/{line['quantity']}",
                "gap": any(g[0] == line["line"] for g in gaps),
                "line": line["line"],
            }
            for line in view.get("line_list", [])
        ]
        self.boxes = [
            {
                "text": f"{b['name']} — exp. {b['expiry']}" if b["expiry"] else b["name"],
                "gap": b["substitution"] or b["line"] is None,
                "serial": b["serial"],
            }
            for b in view.get("box_list", [])
        ]
        unassigned = [b for b in view.get("box_list", []) if b["line"] is None]
        self.unassigned_box = unassigned[0]["name"] if unassigned else ""
        self.unassigned_serial = str(unassigned[0]["serial"] or "") if unassigned else ""
        self.discrepancies = [{"text": _discrepancy(d), "gap": True} for d in view.get("discrepancies", [])]
        self.annotation = str(view.get("annotation", ""))

    def _show_prescription_patient(self, rx: dict[str, Any] | None) -> None:
        written = rx.get("patient") if rx else None
        self.prescription_patient = _person(written) if written else ""
        mismatch = [str(label) for label in (rx or {}).get("mismatch", [])]
        if not written or not mismatch:
            self.prescription_rows = []
            return
        patient = self._view.get("patient")
        identified = _person(patient) if patient else "non identifié"
        self.prescription_rows = [
            {"text": f"Sur l'ordonnance : {self.prescription_patient}", "gap": True},
            {"text": f"Patient identifié : {identified}"},
            {"text": "Diffère : " + ", ".join(mismatch), "gap": True},
        ]

    def _show_pending(self, view: dict[str, Any]) -> None:
        """What the session waits for from the pharmacist: the patient screen says so, and the panel
        opens by itself on it (on the login when locked); it closes again once done if it opened so."""
        act = str(view.get("pending_act") or "")
        self.pharmacist_needed = str(view.get("pharmacist_needed") or "") if act else ""
        self.patient_hint = PATIENT_HINTS.get(act, "")
        if act != self.pending_act:
            self.guardian_for = ""
            self.pending_act = act
            if act and self.step != "payment":
                if not self.panel_open:
                    self._opened_for_act = True
                    self.open_panel()
                self.claims_open = False
            elif not act and self._opened_for_act:
                self.close_panel()
        self._show_work()

    def _show_work(self, *_: Any) -> None:
        """The work page's heading and buttons, for the step, the pending act and who is logged in."""
        act, step = self.pending_act, self.step
        who = f"{self.patient_name} · {self.patient_birth_date}" if self.patient_birth_date else self.patient_name
        if act == "identity-document" and self.guardian_for:
            chosen = next((d["text"] for d in self.documents if d["index"] == self.guardian_for), self.guardian_for)
            title = f"{chosen} : pièce d'identité du représentant légal"
        elif act == "identity-document" and self.minor:
            title = "Pièce présentée, conforme à l'INS (moins de 18 ans) :"
        elif act == "assign-box" and self.unassigned_box:
            title = f"{self.unassigned_box} : à quelle ligne ?"
        elif act == "confirm-prescription" and self.prescription_degraded:
            title = f"Ordonnance papier : {len(self.lines)} ligne(s) saisie(s)"
        elif act == "confirm-prescription":
            title = self.prescription_title or "Ordonnance à confirmer"
        elif act:
            title = ACT_TITLES.get(act, "")
        else:
            title = {
                "attract": "Aucune session en cours",
                "dispensation": "Délivrance en cours",
                "control": "Délivrance à valider",
                "payment": "Facture émise",
            }.get(step, "Session en cours")
        if who and act:
            self.work_title = f"[b]{_markup(who)}[/b]\n{_markup(title)}"
        else:
            self.work_title = _markup(f"{title} — {who}" if who else title)
        self.work_actions = self._work_actions()

    def _show_dp(self, *_: Any) -> None:
        """The panel's « Dossier pharmaceutique » section: the consent, then the consult and its list.
        No patient screen binds these properties; the list needs the panel unlocked (the core gives it
        only while an operator is logged in)."""
        dp = self._view.get("dp")
        if not dp or self.step in ("attract", "payment"):
            self.dp_shown, self.dp_title, self.dp_actions, self.dp_rows = False, "", [], []
            return
        self.dp_shown = self.unlocked and self.pending_act in DP_BESIDE
        consent, history = dp.get("consent"), list(dp.get("history") or []) if self.unlocked else []
        if consent is None:
            title = "Dossier pharmaceutique : accord du patient ?"
            actions = [_action("dp_consent", "Le patient accepte"), _action("dp_refuse", "Refuse", "secondary")]
        elif not consent:
            title = "Dossier pharmaceutique : refusé par le patient"
            actions = [_action("dp_consent", "Le patient accepte", "secondary")]
        else:
            if not dp.get("consulted") or not self.unlocked:
                title = "Dossier pharmaceutique : accord du patient"
            elif history:
                title = f"Dossier pharmaceutique : {len(history)} délivrance(s)"
            else:
                title = "Dossier pharmaceutique : aucune délivrance récente"
            actions = [_action("dp_consult", "Consulter")]
        self.dp_title = _markup(title)
        self.dp_actions = actions
        self.dp_rows = [
            {
                "text": _markup(f"{e['day']}   {e['quantity']} × {e['label']}"),
                "detail": _markup(str(e.get("pharmacy") or "")),
            }
            for e in history
        ]

    def dp_action(self, intent: str) -> None:
        """A button of the « Dossier pharmaceutique » section (professional acts: behind the login)."""
        match intent:
            case "dp_consent":
                self.act("dp_consent", agreed=True)
            case "dp_refuse":
                self.act("dp_consent", agreed=False)
            case "dp_consult":
                self.act("dp_consult")

    def _work_actions(self) -> list[dict[str, Any]]:
        act, step = self.pending_act, self.step
        if step == "attract":
            return [
                _action("recent_claims", "Dernières factures", "secondary"),
                _action("send_batch", "Télétransmettre le lot"),
            ]
        if step == "payment":
            if self._view.get("mailbox") and self._view.get("prescriber_mailbox"):  # MSSanté, with agreement
                return [
                    _action("prescriber_summary_no", "Pas de synthèse", "secondary"),
                    _action("prescriber_summary_yes", "Synthèse au médecin (accord du patient)"),
                ]
            return []
        cancel = _action("cancel", "Annuler la session", "danger")
        match act:
            case "identity-document":
                return []  # the document grid holds every answer
            case "confirm-traits":
                return [cancel, _action("confirm_traits", "Confirmer les traits INS")]
            case "prescription-patient":
                return [
                    cancel,
                    _action("reject_prescription", "Écarter", "secondary"),
                    _action("accept_prescription_patient", "C'est bien ce patient"),
                ]
            case "confirm-prescription" | "enter-lines":
                return [
                    cancel,
                    _action("reject_prescription", "Écarter", "secondary"),
                    _action("confirm_prescription", "Confirmer", disabled=not self.lines),
                ]
            case "assign-box":
                return [cancel, _action("remove_box", "Retirer la boîte", "secondary")]
            case "validate":
                return [cancel, _action("validate", "Valider")]
        if step == "dispensation":
            return [cancel, _action("continue", "Contrôler", disabled=not self.boxes)]
        return [cancel]

    def _choose_screen(self) -> None:
        if self.waiting:
            self.screen = "waiting"
        elif self.step == "attract" and self.now() < self._thanks_until:
            self.screen = "thanks"
        else:
            self.screen = SCREENS.get(self.step, "attract")

    # ------------------------------------------------------------------ time (from the Kivy clock)
    def refresh(self) -> None:
        """Called a few times a second: waiting screen, progress, message and thank-you expiry, panel lock."""
        now = self.now()
        if self.busy and not self.waiting and now - self._busy_since >= self.waiting_after_s:
            self.waiting = True
        if self.waiting:
            self.progress = min(0.95, (now - self._busy_since) / max(self.expected_call_s, 0.1))
        if self.message and self._message_until and now >= self._message_until:
            self.message = ""
        if self._thanks_until and now >= self._thanks_until:
            self._thanks_until = 0.0
            self.receipt = []
        if self.unlocked and now - self._panel_touched >= self.panel_lock_s:
            self.lock("Espace pharmacien verrouillé (inactivité)")
        self._choose_screen()
        if self._unreported_claim is not None and self.screen == "payment":
            self._report_shown(self._unreported_claim)

    def _report_shown(self, claim: int) -> None:
        """Tell the core the payment screen is up with this claim (see appliance.store.recent_claims).

        Sent from the clock, after the screen was switched in an earlier frame, so the report never
        runs ahead of what the patient can see; a stop in between only flags a bill that was seen.
        """
        self._unreported_claim = None
        self._reported_claim = claim
        if self.actions is not None:
            self.actions.claim_shown(claim)

    # ------------------------------------------------------------------ patient touches
    def send(self, name: str, **args: Any) -> None:
        if self.actions is not None:
            self.actions.intent(name, **args)

    def choose_beneficiary(self, index: int) -> None:
        self.send("choose_beneficiary", index=index)

    def set_renewal(self, renewal: int) -> None:
        self.touch_panel()
        self.renewal = max(0, min(int(renewal), int(self.renewals)))

    def cancel(self) -> None:
        """Annuler: from the waiting screen the call in progress ends first, then the session is dropped."""
        if self.busy:
            self.cancelling = True
            self.waiting_label = "Annulation…"
        self.send("cancel")

    # ------------------------------------------------------------------ pharmacist panel
    def open_panel(self) -> None:
        self.panel_open = True
        self.touch_panel()
        if not self.unlocked:
            self.pin_for = "cps" if self.cps_holder and self.verify_cps is not None else ""

    def close_panel(self) -> None:
        if self._panel_message:
            self._say(None, ok=True)  # what the DP said stays on the panel, never on the patient screen
        self._opened_for_act = False
        self.panel_open = False
        self.close_pin()
        self._forget_claims()
        self._end_ecps()

    # ------------------------------------------------------------------ professional acts (panel only)
    def act(self, name: str, **args: Any) -> None:
        """A professional act from the work page: sent only behind a login; without one the panel
        opens on it instead (the core refuses such an act anyway)."""
        self.touch_panel()
        if not self.unlocked:
            self._say(msg.PROFESSIONAL_NEEDED, ok=False)
            if not self.panel_open:
                self.open_panel()
            return
        self.send(name, **args)

    def work_action(self, intent: str) -> None:
        """A button of the work page's bar."""
        match intent:
            case "cancel":
                self.touch_panel()
                self.cancel()
            case "recent_claims":
                self.show_claims()
            case "validate":
                self.touch_panel()
                if self.cps_open:
                    self.act("validate", cps=True)  # the card proved who validates: no PIN to type
                elif self.unlocked:
                    self.ask_validation()
            case "continue":
                self.touch_panel()
                self.send("continue")
            case "confirm_prescription":
                self.confirm_prescription()
            case "remove_box":
                self.act("remove_box", serial=self.unassigned_serial)
            case "prescriber_summary_yes" | "prescriber_summary_no":
                self.act("prescriber_summary", agreed=intent.endswith("yes"))
            case _:
                self.act(intent)

    def choose_identity(self, index: int) -> None:
        self.act("choose_identity", index=index)

    def document_chosen(self, code: str) -> None:
        """A button of the document check: a document, or one of the other answers."""
        self.touch_panel()
        if code in ("absent", "refused", "contradicts"):
            self.act(f"document_{code}")
        elif code in FOR_MINOR_ONLY:
            self.guardian_for = code  # then the guardian's own document
        else:
            self.act("document_checked", document=code)

    def guardian_chosen(self, code: str) -> None:
        document, self.guardian_for = self.guardian_for, ""
        if code != "back" and document:
            self.act("document_checked", document=document, guardian_document=code)

    def confirm_prescription(self) -> None:
        self.act("confirm_prescription", renewal=int(self.renewal))

    def assign_box(self, line: int) -> None:
        self.act("assign_box", line=int(line), serial=self.unassigned_serial or None)

    def show_claims(self) -> None:
        """Open "Dernières factures": the core lists them (and audits who looked); the page opens if it agrees."""
        self.touch_panel()
        self._after_result("intent:recent_claims", self._claims_listed)
        self.send("recent_claims")

    def _claims_listed(self, result: Result) -> None:
        if result.outcome.accepted and self.unlocked:
            self.claims_open = True

    def close_claims(self) -> None:
        self.touch_panel()
        self.claims_open = False

    def _forget_claims(self) -> None:
        self.claims_open = False
        self.recent_claims = []

    def touch_panel(self) -> None:
        self._panel_touched = self.now()

    def choose_operator(self, name: str) -> None:
        self.touch_panel()
        self.operator_name = name
        self.pin = self._pin_pad
        self.pin.clear()
        self.ecps_possible = self.ecps_ready and name in self.rpps_of
        self.pin_for = "login"

    def validate_pressed(self) -> None:
        """Valider asked from outside the panel: the panel opens on the PIN pad (after login when locked)."""
        self.open_panel()
        if self.unlocked:
            self.work_action("validate")

    def ask_validation(self) -> None:
        self.touch_panel()
        self.pin.clear()
        self.pin_for = "validate"

    def close_pin(self) -> None:
        self.pin.clear()
        self.pin = self._pin_pad
        self.pin_for = ""

    def submit_pin(self) -> None:
        """OK on the pad: log in, or validate the dispensation, with the PIN just typed."""
        self.touch_panel()
        pin = self.pin.take()
        if not pin:
            return
        if self.pin_for == "login":
            name = self.operator_name
            self._after_result("intent:login", self._logged_in)
            self.send("login", operator=name, pin=pin)
        elif self.pin_for == "cps" and self.verify_cps is not None:
            self._after_result("intent:cps_login", self._cps_logged_in)
            self.verify_cps(pin)
        elif self.pin_for == "validate":
            self.send("validate", operator=self.operator_name, pin=pin)
        elif self.pin_for == "rpps":
            if len(pin) != 11:
                self._say("Numéro RPPS : 11 chiffres", ok=False)
                return
            known = next((name for name, rpps in self.rpps_of.items() if rpps == pin), f"RPPS {pin}")
            self._begin_ecps(pin, known, from_pad=False)

    def _logged_in(self, result: Result) -> None:
        if result.outcome.accepted:
            self.unlocked = True
            self.pin_for = ""
            self.touch_panel()
            if self.recovery_text:
                self.show_claims()

    def _cps_logged_in(self, result: Result) -> None:
        if not result.outcome.accepted:
            return  # the pad stays on the card's PIN: the message says why (tries left, unknown card)
        if not self.cps_holder:
            self.send("logout")  # the card left while its PIN was being checked: no session without it
            return
        self.unlocked = True
        self.cps_open = True
        self.operator_name = self.cps_holder
        self.pin_for = ""
        self.touch_panel()
        if self.recovery_text:
            self.show_claims()

    def _after_result(self, kind: str, callback: Callable[[Result], None]) -> None:
        def once(result: Result) -> None:
            if result.kind == kind:
                self._applied.remove(once)
                callback(result)

        self._applied.append(once)

    def lock(self, why: str = "Espace pharmacien verrouillé") -> None:
        """Lock the panel (timeout, card pulled out, or the Verrouiller button) and log the operator out."""
        was = self.unlocked
        self._logged_out()
        if was:
            self.send("logout")
            self._say(why, ok=True)

    def _logged_out(self) -> None:
        self.dp_rows = []
        self.unlocked = False
        self.cps_open = False
        self.operator_name = ""
        self.guardian_for = ""
        self.close_panel()

    def annotate(self, text: str) -> None:
        self.act("annotate", text=text)

    def enter_line(self, label: str, cip13: str) -> None:
        self.act("enter_line", label=label, quantity=1, cip13=cip13)

    def card_removed(self) -> None:
        """A card left the reader: the pharmacist's unlock does not outlive it."""
        if self.unlocked:
            self.lock("Carte retirée : espace pharmacien verrouillé")

    # ------------------------------------------------------------------ the pharmacist's CPS
    def cps_inserted(self, holder: str, tries_left: int, blocked: bool = False) -> None:
        """A CPS in the reader: the panel opens on its PIN pad (the card checks the PIN, not the store)."""
        self.cps_holder = holder
        if blocked:
            self._say("Carte CPS bloquée : débloquez-la avec son code de déblocage", ok=False)
            return
        if self.unlocked:
            return  # already logged in (PIN pad): the card is there for the next login
        self.open_panel()
        self.pin.clear()
        self.pin_for = "cps" if self.verify_cps is not None else ""
        self._say(f"Carte CPS de {holder} : saisissez son code ({tries_left} essai(s))", ok=True)

    def cps_removed(self) -> None:
        """The CPS left the reader: the panel locks and the core's operator session ends with it,
        whatever was open (a CPS session must never outlive its card)."""
        had_session = self.unlocked or self.cps_open
        self._end_ecps()
        self.cps_holder = ""
        self.unlocked = False
        self.cps_open = False
        self.operator_name = ""
        self.close_pin()
        self.panel_open = False
        self._forget_claims()
        if had_session:
            self.send("logout")
            self._say("Carte CPS retirée : espace pharmacien verrouillé", ok=True)

    def warn(self, message: str) -> None:
        """A device's own French sentence (a card the reader could not use, a scanner unplugged)."""
        self._say(message, ok=False)

    def set_operators(self, names: Sequence[str]) -> None:
        self.operators = list(names)

    def set_operator_rpps(self, rpps_of: Mapping[str, str]) -> None:
        """The RPPS on record for each operator who has one (their CPS, their e-CPS)."""
        self.rpps_of = dict(rpps_of)

    # ------------------------------------------------------------------ e-CPS (Pro Santé Connect, CIBA)
    def ecps_login(self) -> None:
        """« e-CPS (téléphone) » on the PIN pad of the operator chosen: their phone is asked."""
        self.touch_panel()
        rpps = self.rpps_of.get(self.operator_name)
        if rpps is None or self.ecps is None:
            self._say(f"Pas de RPPS enregistré pour {self.operator_name} : connectez-vous avec votre code", ok=False)
            return
        self._begin_ecps(rpps, self.operator_name, from_pad=True)

    def ask_rpps(self) -> None:
        """« e-CPS : saisir mon RPPS »: the pad types the 11 digits, shown in clear."""
        self.touch_panel()
        self._rpps_pad.clear()
        self.pin = self._rpps_pad
        self.pin_for = "rpps"

    def _begin_ecps(self, rpps: str, who: str, *, from_pad: bool) -> None:
        if self.ecps is None:
            return
        self.pin.clear()
        self.pin = self._pin_pad
        self.pin_for = ""
        self._ecps_from_pad = from_pad
        self.ecps_name, self.ecps_code = who, ""
        self.ecps_waiting = True
        self._say(None, ok=True)
        self.ecps.start(rpps, self)

    def ecps_started(self, binding_message: str) -> None:
        """The provider accepted the request: the phone shows ``binding_message`` (so does the panel)."""
        if self.ecps_waiting:
            self.ecps_code = binding_message
            self.touch_panel()

    def ecps_failed(self, message: str) -> None:
        """Refused on the phone, expired, provider unreachable...: said, and back to the PIN."""
        if not self.ecps_waiting:
            return
        self.ecps_waiting = False
        self._say(message, ok=False)
        self.pin_for = "login" if self._ecps_from_pad and self.operator_name else ""

    def cancel_ecps(self) -> None:
        """Annuler while the phone is asked: the wait stops, nothing of it reaches the core."""
        self.touch_panel()
        if not self.ecps_waiting:
            return
        self._end_ecps()
        self._say("Connexion e-CPS annulée", ok=True)
        self.pin_for = "login" if self._ecps_from_pad and self.operator_name else ""

    def _end_ecps(self) -> None:
        if self.ecps_waiting and self.ecps is not None:
            self.ecps.cancel()
        self.ecps_waiting = False
        self.ecps_code = ""

    def _ecps_result(self, result: Result) -> None:
        """The core's answer to ``psc_login`` (sent only with a verified ID token)."""
        if result.kind != "intent:psc_login":
            return
        waiting = self.ecps_waiting
        self.ecps_waiting, self.ecps_code = False, ""
        if not result.outcome.accepted:
            self.pin_for = "login" if self._ecps_from_pad and self.operator_name else ""
            return  # the message says why (an RPPS this pharmacy does not know)
        if not waiting or not self.panel_open:
            self.send("logout")  # cancelled while the token was checked: no session nobody waits for
            return
        self.unlocked = True
        self.operator_name = str(result.view.get("operator_name") or self.ecps_name)
        self.pin_for = ""
        self.touch_panel()
        if self.recovery_text:
            self.show_claims()


NBSP = "\u00a0"


def _euros(cents: object) -> str:
    """An amount that never breaks before its euro sign."""
    return msg.euros(int(str(cents))).replace(" €", NBSP + "€")


def _plain(message: str | None, *, offline_shown: bool = False) -> str | None:
    """The core's sentence for a person at the counter: a reader's technical detail stays in the logs,
    and what the offline banner already lists is not said twice."""
    if not message:
        return message
    if message.startswith(msg.UNREADABLE):
        return msg.UNREADABLE
    if offline_shown:
        parts = [part for part in message.split("; ") if not part.startswith("Hors ligne :")]
        return "; ".join(parts) or None
    return message


def _title(first_names: str) -> str:
    return " ".join(part.capitalize() for part in first_names.replace("-", "- ").split()).replace("- ", "-")


def _first_name(first_names: str) -> str:
    return _title(first_names.split()[0]) if first_names.split() else ""


def _person(p: dict[str, Any]) -> str:
    """« Marie Claire DURAND, 12/03/1968 »: a name and birth date (no participle: the sex is not known)."""
    name = f"{_title(str(p.get('first_names') or ''))} {p.get('birth_name') or ''}".strip()
    return f"{name}, {p['birth_date']}" if p.get("birth_date") else name


def _identity_choice(c: dict[str, Any]) -> str:
    sex = str(c.get("sex") or "")
    born = f"{BORN[sex]} {c['birth_date']}" if sex in BORN else f"date de naissance {c['birth_date']}"
    place = f" ({c['birth_place']})" if c.get("birth_place") else ""
    return f"{_title(c['first_names'])} {c['birth_name']}, {SEX.get(sex, sex)}, {born}{place}".replace(", ,", ",")


def _action(intent: str, text: str, kind: str = "primary", *, disabled: bool = False) -> dict[str, Any]:
    return {"index": intent, "intent": intent, "text": text, "kind": kind, "disabled": disabled}


def _markup(text: str) -> str:
    return str(escape_markup(text))


def _initials(c: dict[str, Any]) -> str:
    """The patient of a past claim by initials only (« M. D. »): the screen faces the next patient."""
    if c.get("initials"):
        return str(c["initials"])
    words = [str(c.get("first_names") or "").split(), str(c.get("birth_name") or "").split()]
    return " ".join(f"{w[0][0].upper()}." for w in words if w)


def _claim_row(c: dict[str, Any]) -> dict[str, Any]:
    """One claim of "Dernières factures": number, time and the patient's initials large; amounts and
    operator below."""
    name = escape_markup(_initials(c))
    status = {"accepted": " · acceptée", "rejected": " · rejetée"}.get(str(c.get("status")), "")
    return {
        "text": f"[b]N° {c['claim']}[/b]   {c['when']}   {name}",
        "detail": f"Total {_euros(c['total'])} · AMO {_euros(c['amo'])} · AMC {_euros(c['amc'])}"
        f" · patient {_euros(c['patient'])} · {escape_markup(str(c['operator']))}{status}",
        "gap": bool(c.get("interrupted")),
        "claim": int(c["claim"]),
    }


def _discrepancy(d: dict[str, Any]) -> str:
    match d["kind"]:
        case "quantity":
            return f"Ligne {d['line']} : {d['dispensed']} boîte(s) délivrée(s) sur {d['prescribed']} prescrite(s)"
        case "substitution":
            return f"Ligne {d['line']} : substitution (CIP {d['dispensed']} au lieu de {d['prescribed']})"
        case "unassigned-box":
            return f"Boîte CIP {d['dispensed']} affectée à aucune ligne"
    return str(d)
