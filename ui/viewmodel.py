"""View models: what the kiosk's screens show, as Kivy properties, computed from the core's projection.

They hold no business rule: every decision is the core's (``Counter.handle``); they turn its
``view()`` into French sentences and lists the kv screens bind to, and turn touches into intents.
They are plain EventDispatchers, so they are tested without a window; time comes from an injected
monotonic clock and :meth:`KioskViewModel.refresh`, which the app calls from the Kivy clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kivy.event import EventDispatcher
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty
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
}
SEX = {"M": "homme", "F": "femme"}
ANNOTATIONS = ("Une seule boîte en stock", "Substitution par un générique", "Patient informé de l'écart")
"""Annotations the pharmacist can add with one touch (no keyboard at the counter)."""


class Actions(Protocol):
    """What the view model asks of the core (the :class:`ui.controller.KioskController`)."""

    def intent(self, name: str, **args: Any) -> None: ...

    def claim_shown(self, claim: int) -> None: ...


class PinPad(EventDispatcher):  # type: ignore[misc]
    """The on-screen PIN pad: digits are kept out of every property, only their count is shown."""

    mask = StringProperty("")
    length = NumericProperty(0)
    max_length = 8

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._digits = ""

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
        self.mask = "•" * len(self._digits)


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
    identity_title = StringProperty("")
    identity_choices = ListProperty([])
    traits_differences = ListProperty([])
    qualification_prompt = BooleanProperty(False)
    amo_text = StringProperty("")
    amo_ok = BooleanProperty(False)
    amc_text = StringProperty("")
    amc_ok = BooleanProperty(False)
    prescription_title = StringProperty("")
    prescription_degraded = BooleanProperty(False)
    renewals = NumericProperty(0)
    renewal = NumericProperty(0)
    lines = ListProperty([])
    boxes = ListProperty([])
    unassigned_box = StringProperty("")
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
    products = ListProperty([])
    """(label, cip13) the pharmacist can enter in degraded mode."""
    claims_open = BooleanProperty(False)
    """The panel shows "Dernières factures" (unlocked only)."""
    recent_claims = ListProperty([])
    """Rows of that list (``text``, ``detail``, ``gap`` for the bill a stop hid from its patient)."""
    recovery_text = StringProperty("")
    """The panel's banner when the kiosk started after a bill its patient never saw (pharmacist only)."""

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
        self.pin = PinPad()
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
        self._message_until = self.now() + self.banner_s if text else 0.0

    def _apply(self, result: Result) -> None:
        view, outcome = result.view, result.outcome
        previous = self.step
        self._view = view
        later = [str(x) for x in view.get("later", [])]
        if outcome.message or result.kind == "scan" or result.kind.startswith("intent:"):
            # a touch or a scan without words clears an old message; a tick or a card pulled out does not
            self._say(_plain(outcome.message, offline_shown=bool(later)), ok=outcome.accepted)
        if result.kind == "card-removed":
            self.card_removed()
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
        if self.step == "payment" and previous != "payment":
            self.panel_open = False  # validated: the patient sees what they owe
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

    def _show_identity(self, view: dict[str, Any]) -> None:
        choices = view.get("identity_choice_list", [])
        self.identity_choices = [
            {
                "index": i,
                "text": f"{_title(c['first_names'])} {c['birth_name']}, {SEX.get(c['sex'], c['sex'])}, "
                f"né(e) le {c['birth_date']}" + (f" ({c['birth_place']})" if c["birth_place"] else ""),
            }
            for i, c in enumerate(choices)
        ]
        self.traits_differences = [
            {"text": f"{d['label']} : {d['on_file']}, devient {d['now']}"} for d in view.get("traits_differences", [])
        ]
        self.qualification_prompt = bool(view.get("qualification_prompt"))
        if choices:
            self.identity_title = "Plusieurs identités : le pharmacien choisit"
        elif self.traits_differences:
            self.identity_title = "Identité modifiée : le pharmacien vérifie"
        elif self.qualification_prompt:
            self.identity_title = "Le pharmacien vérifie votre pièce d'identité"
        else:
            self.identity_title = "Vérification de votre identité"

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
        self.discrepancies = [{"text": _discrepancy(d), "gap": True} for d in view.get("discrepancies", [])]
        self.annotation = str(view.get("annotation", ""))

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

    def choose_identity(self, index: int) -> None:
        self.send("choose_identity", index=index)

    def set_renewal(self, renewal: int) -> None:
        self.renewal = max(0, min(int(renewal), int(self.renewals)))

    def confirm_prescription(self) -> None:
        self.send("confirm_prescription", renewal=int(self.renewal))

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
        self.panel_open = False
        self.close_pin()
        self._forget_claims()

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
        self.pin.clear()
        self.pin_for = "login"

    def validate_pressed(self) -> None:
        """Valider on the control screen: the panel opens on the PIN pad (after login when locked)."""
        self.open_panel()
        if self.unlocked and self.cps_open:
            self.send("validate", cps=True)  # the card proved who validates: no PIN to type
        elif self.unlocked:
            self.ask_validation()

    def ask_validation(self) -> None:
        self.touch_panel()
        self.pin.clear()
        self.pin_for = "validate"

    def close_pin(self) -> None:
        self.pin.clear()
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
        self.unlocked = False
        self.cps_open = False
        self.operator_name = ""
        self.close_pin()
        self.panel_open = False
        self._forget_claims()
        if was:
            self.send("logout")
            self._say(why, ok=True)

    def annotate(self, text: str) -> None:
        self.touch_panel()
        self.send("annotate", text=text)

    def enter_line(self, label: str, cip13: str) -> None:
        self.touch_panel()
        self.send("enter_line", label=label, quantity=1, cip13=cip13)

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


def _claim_row(c: dict[str, Any]) -> dict[str, Any]:
    """One claim of "Dernières factures": number, time and patient large; amounts and operator below."""
    name = escape_markup(f"{_title(str(c['first_names']))} {c['birth_name']}")
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
