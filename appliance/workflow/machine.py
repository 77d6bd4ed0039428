"""The counter workflow as a state machine driven by events (DESIGN §3).

One :class:`Counter` serves one e-lecteur. ``handle(event)`` is synchronous: it may call a
teleservice (bounded by the adapter's short timeout), so the kiosk calls it off the UI thread.
When a teleservice cannot be reached the session carries on in degraded mode and the call is
queued in the outbox, to be completed by :mod:`appliance.delivery` when the network returns.
An event that does not fit the current step is refused with a French message and changes nothing.
"""

from __future__ import annotations

import copy
import logging
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from appliance.billing import BillItem, compute_bill
from appliance.codes.attestation import AmcAttestation
from appliance.codes.gs1 import MedicineBox
from appliance.codes.ins import InsIdentity
from appliance.codes.kinds import CodeKind
from appliance.codes.opaque import OpaqueToken
from appliance.domain import (
    DEFAULT_ACTS,
    Act,
    AmcRights,
    Beneficiary,
    DocumentCheck,
    IdentityDocument,
    IdentityStatus,
    Ins,
    InsiOutcome,
    InsiResult,
    PrescribedFor,
    PrescriptionLine,
    Role,
    Traits,
    Visibility,
)
from appliance.products import ProductTable
from appliance.store.operators import AuthenticationError, Operator, OperatorLocked, PinRejected
from appliance.store.recent_claims import DEFAULT_LIMIT, InterruptedClaim, RecentClaim
from appliance.store.records import ClaimDraft, CounterRecords
from appliance.teleservices import TeleserviceRefused, Teleservices, TeleserviceUnavailable
from appliance.workflow import messages as msg
from appliance.workflow.events import (
    CardInserted,
    CardRemoved,
    Event,
    Intent,
    NetworkChanged,
    ResultShown,
    Scanned,
    Started,
    Tick,
)
from appliance.workflow.session import DispensedBox, Session, Step

log = logging.getLogger(__name__)
T = TypeVar("T")

CARD_DATA_MAX_AGE = timedelta(days=365)


@dataclass(frozen=True)
class CounterSettings:
    qualification_visits: int = 3
    """How many next visits the qualification prompt comes back for an identity left RECUP."""
    idle_timeout_s: float = 120.0
    """Patient data is cleared after this long without any event (and the last receipt with it)."""
    dp_months: int = 4
    """How far back the Dossier Pharmaceutique is consulted."""
    operator_idle_s: float = 300.0
    """An operator's login ends after this long without a professional act of theirs: the screen
    faces the patient, so a login left open must not let the next person act as the pharmacist."""

    acts: Mapping[Role, frozenset[Act]] = field(default_factory=lambda: dict(DEFAULT_ACTS))
    """What each role may do (``[counter.acts]`` in kiosk.toml: a role name -> a list of act names);
    roles left out keep :data:`~appliance.domain.DEFAULT_ACTS`."""

    def __post_init__(self) -> None:
        acts = dict(DEFAULT_ACTS)
        for role, names in dict(self.acts).items():
            try:
                acts[Role(role)] = frozenset(Act(name) for name in names)
            except ValueError as exc:
                known = ", ".join(a.value for a in Act)
                raise ValueError(f"acts: {exc} (roles: titulaire, pharmacien, preparateur; acts: {known})") from None
        object.__setattr__(self, "acts", acts)
        if isinstance(self.qualification_visits, bool) or not isinstance(self.qualification_visits, int):
            raise ValueError("qualification_visits must be a whole number of visits")
        if self.qualification_visits < 0:
            raise ValueError("qualification_visits cannot be negative")
        for name in ("idle_timeout_s", "operator_idle_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one event: accepted or refused, and what to tell the people at the counter."""

    accepted: bool
    step: Step
    message: str | None = None


class Refused(Exception):
    """An event that does not fit: the message is shown, the session is unchanged.

    ``audit`` is a journal row (operator id, action, subject, details) written *after* the event's
    changes were rolled back, for refusals that must leave a trace (an unknown CPS, a préparateur
    trying to validate).
    """

    def __init__(self, message: str, *, audit: tuple[int | None, str, str, dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.audit = audit


_UNREFUSABLE = (Tick, NetworkChanged, Started, ResultShown)
"""Events that report a fact: never refused, each write its own."""
_AUTHENTICATING = frozenset({"login", "validate"})
"""Intents that check a PIN first: the check commits on its own (a failure must count even when the
act is refused), so they open their unit of work themselves after it."""


class Counter:
    """One counter's workflow: the current session, the logged-in operator, and the ports."""

    def __init__(
        self,
        records: CounterRecords,
        teleservices: Teleservices,
        products: ProductTable,
        *,
        clock: Callable[[], float],
        settings: CounterSettings | None = None,
    ) -> None:
        self.records = records
        self.teleservices = teleservices
        self.products = products
        self.clock = clock
        self.settings = settings or CounterSettings()
        self.step = Step.ATTRACT
        self.session = Session()
        self.operator: Operator | None = None
        """The professional logged in at this counter (PIN or CPS), whose acts the journal records."""
        self._operator_active = 0.0
        """When they last acted (login or professional act): the login ends ``operator_idle_s`` later."""
        self.cps_operator: Operator | None = None
        """The operator when they logged in with their CPS (PIN checked by the card): while it is set,
        a pharmacist validates without typing their personal PIN. Cleared by any other login and by
        logout (the kiosk sends logout when the card leaves the reader)."""
        self.online = True
        self.notices: list[str] = []
        self.last_outcome: dict[str, Any] | None = None
        self.recent_claims: list[RecentClaim] = []
        """The last claims as the logged-in operator listed them (``recent_claims``); dropped at logout
        and as soon as a patient session starts (the kiosk faces the patient)."""
        self.interrupted: InterruptedClaim | None = None
        """Set at start when the newest claim committed shortly before and no screen showed it."""
        self._interrupted_listed = False
        self._last_activity = clock()

    @property
    def operator_id(self) -> int | None:
        return self.operator.id if self.operator is not None else None

    # ------------------------------------------------------------------ entry point
    def handle(self, event: Event) -> Outcome:
        """Apply one event: all of its effects, or none.

        The event's database writes share one transaction (audit rows and outbox messages included)
        and the session is restored from a copy when it is refused or fails, so a refusal never leaves
        half an effect behind (a qualification written, a screen moved on). Interactive teleservice
        calls run inside that transaction; they are bounded by the adapter's short timeout.
        """
        self.notices = []
        timed_out = self._expire_login()
        if timed_out and not isinstance(event, Tick):
            self.notices.append(timed_out)
        before = self._snapshot()
        try:
            if isinstance(event, _UNREFUSABLE) or (isinstance(event, Intent) and event.name in _AUTHENTICATING):
                message = self._dispatch(event)
            else:
                with self.records.unit_of_work():
                    message = self._dispatch(event)
        except Refused as refusal:
            self._restore(before)
            if refusal.audit is not None:
                self.records.audit(*refusal.audit)
            return Outcome(False, self.step, str(refusal))
        except TeleserviceRefused as refusal:  # a service said no where the step had no answer of its own
            self._restore(before)
            return Outcome(False, self.step, refusal.message)
        except BaseException:
            self._restore(before)
            raise
        if timed_out and isinstance(event, Tick):
            message = "; ".join(m for m in (message, timed_out) if m)
        if self.step is not Step.ATTRACT:
            self.recent_claims = []  # another patient's bills never stay up behind a session
        if not isinstance(event, Tick):
            self._last_activity = self.clock()
        notice = "; ".join(n for n in [message, *self.notices] if n)
        return Outcome(True, self.step, notice or None)

    _KEPT_ON_REFUSAL = (
        "step",
        "operator",
        "cps_operator",
        "_operator_active",
        "last_outcome",
        "recent_claims",
        "interrupted",
        "_interrupted_listed",
    )
    """What an event may change besides the session (copied whole): restored when it is refused."""

    def _snapshot(self) -> tuple[Session, tuple[Any, ...]]:
        return copy.deepcopy(self.session), tuple(getattr(self, name) for name in self._KEPT_ON_REFUSAL)

    def _restore(self, snapshot: tuple[Session, tuple[Any, ...]]) -> None:
        self.session, values = snapshot
        for name, value in zip(self._KEPT_ON_REFUSAL, values, strict=True):
            setattr(self, name, value)

    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), tz=UTC).date()

    def _dispatch(self, event: Event) -> str | None:
        match event:
            case Tick():
                return self._tick()
            case NetworkChanged(online=online):
                self.online = online
                return None
            case Started():
                self._started()
                return None
            case ResultShown(claim=claim):
                self.records.claim_shown(int(claim), self.operator_id)
                return None
            case CardInserted():
                return self._card_inserted(event)
            case CardRemoved():
                return self._card_removed()
            case Scanned(code=code):
                return self._scanned(code)
            case Intent(name=name, args=args):
                handler = getattr(self, f"_intent_{name.replace('-', '_')}", None)
                if handler is None:
                    raise Refused(f"Action inconnue : {name}")
                result: str | None = handler(**args)
                return result
        raise Refused("Événement inconnu")

    def _not_now(self) -> Refused:
        return Refused(msg.NOT_NOW.format(what=msg.EXPECTED[self.step.value]))

    def _audit(self, action: str, subject: str = "", **details: Any) -> None:
        self.records.audit(self.operator_id, action, subject, details)

    def _call(self, what: str, call: Callable[[], T], *, unavailable: str | None = None) -> T | None:
        """An interactive teleservice call; None when unreachable (degraded mode). The notice says
        ``what`` will be completed later, or ``unavailable`` for a look-up nothing can complete later."""
        notice = unavailable or msg.offline(what)
        if not self.online:
            self.notices.append(notice)
            return None
        try:
            return call()
        except TeleserviceUnavailable:
            self.online = False
            self.notices.append(notice)
            return None

    def _professional(self, act: Act) -> Operator:
        """The professional doing ``act`` now: refused when nobody is logged in at this counter, or
        when their role may not do it (``CounterSettings.acts``).

        Every act that decides for the patient (identity, prescription, dispensation choices, DMP,
        the last claims) goes through here, so no touch on the patient-facing screen does it alone;
        the act is audited under this operator and keeps their login alive.
        """
        op = self.operator
        if op is None:
            raise Refused(msg.PROFESSIONAL_NEEDED)
        if act not in self.settings.acts[op.role]:
            raise Refused(
                msg.ACT_NOT_ALLOWED, audit=(op.id, "act.refused", "", {"act": act.value, "role": op.role.value})
            )
        self._operator_active = self.clock()
        return op

    def _expire_login(self) -> str | None:
        """End the login of an operator idle for ``operator_idle_s`` (checked before every event)."""
        if self.operator is None or self.clock() - self._operator_active < self.settings.operator_idle_s:
            return None
        self._end_login("operator.timeout")
        return msg.OPERATOR_TIMEOUT

    def _end_login(self, action: str) -> None:
        self._audit(action, cps=self.cps_operator is not None)
        self.operator = None
        self.cps_operator = None
        self.recent_claims = []
        if self._interrupted_listed:  # a pharmacist saw the list it points into: no need to say it again
            self.interrupted = None
            self._interrupted_listed = False

    # ------------------------------------------------------------------ time
    def _tick(self) -> str | None:
        idle = self.clock() - self._last_activity
        if idle < self.settings.idle_timeout_s:
            return None
        if self.step is not Step.ATTRACT:
            self._audit("session.timeout", step=self.step.value)
            self._clear()
            return "Session fermée après inactivité"
        self.last_outcome = None  # the last patient's receipt does not stay up for the next one
        return None

    def _clear(self) -> None:
        """Forget the patient: nothing of them stays on screen or in memory."""
        self.session = Session()
        self.step = Step.ATTRACT

    # ------------------------------------------------------------------ operators
    def _authenticate(self, who: int | str, pin: str) -> Operator:
        try:
            return self.records.authenticate(who, pin)
        except PinRejected as refusal:
            raise Refused(msg.PIN_WRONG.format(left=refusal.attempts_left)) from None
        except OperatorLocked as refusal:
            same_day = msg.fr_day(refusal.until) == msg.fr_day(self.clock())
            until = (
                msg.fr_time(refusal.until) if same_day else f"{msg.fr_day(refusal.until)} {msg.fr_time(refusal.until)}"
            )
            raise Refused(msg.LOCKED.format(until=until)) from None
        except AuthenticationError:
            raise Refused("Opérateur inconnu") from None

    def _intent_login(self, operator: int | str, pin: str) -> str:
        op = self._authenticate(operator, pin)
        self.operator = op
        self._operator_active = self.clock()
        self.cps_operator = None
        self.recent_claims = []
        return f"Bonjour {op.name}"

    def _intent_cps_login(self, rpps: str, name: str = "") -> str:
        """A CPS whose PIN the card has just accepted: the kiosk sends this only after ``verify_pin``
        succeeded, so here only the RPPS -> operator mapping is decided (and audited)."""
        op = self._login_by_rpps(str(rpps), name, "cps")
        self.cps_operator = op
        return f"Bonjour {op.name}"

    def _intent_psc_login(self, rpps: str, name: str = "") -> str:
        """A professional who validated on their phone (e-CPS, Pro Santé Connect): the kiosk sends this
        only once the identity provider's ID token for this login was verified (signature, audience,
        nonce, expiry); as with the card, only the RPPS -> operator mapping is decided here. Same roles,
        journal and end of session as a PIN login; validating still asks the personal PIN."""
        op = self._login_by_rpps(str(rpps), name, "psc")
        return f"Bonjour {op.name}"

    def _login_by_rpps(self, rpps: str, name: str, via: str) -> Operator:
        """The operator whose RPPS a card or the national identity provider proved; the PIN lock-out a
        patient may have caused at the screen is lifted, since the person proved who they are."""
        op = self.records.operator_by_rpps(rpps)
        if op is None:
            raise Refused(msg.CPS_UNKNOWN, audit=(None, f"operator.{via}.unknown", f"rpps:{rpps}", {"name": name}))
        self.operator = op
        self._operator_active = self.clock()
        self.cps_operator = None
        self.recent_claims = []
        self._audit(f"operator.{via}.login", f"operator:{op.id}")
        self.records.clear_pin_lock(op.id, by=op.id, reason=f"{via}-login")
        return op

    def _intent_logout(self) -> str:
        self._end_login("operator.logout")
        return "Session opérateur fermée"

    def _intent_unlock_operator(self, operator: str) -> str:
        """A pharmacist lifts a colleague's PIN lock-out (wrong PINs typed at the patient screen, say),
        under their own name in the journal."""
        op = self._professional(Act.UNLOCK)
        target = next((o for o in self.records.operators() if o.name == operator), None)
        if target is None:
            raise Refused("Opérateur inconnu")
        if not self.records.clear_pin_lock(target.id, by=op.id, reason="colleague"):
            return f"Le code de {target.name} n'était pas bloqué"
        return f"Code de {target.name} débloqué"

    # ------------------------------------------------------------------ the last claims, and start-up
    def _intent_recent_claims(self, limit: int = DEFAULT_LIMIT) -> str | None:
        """The "Dernières factures" of the pharmacist's panel: the newest claims with the patients' names.

        Behind an operator (the read is audited under their id) and only between patients: the panel
        covers the patient-facing screen, so the next patient must not read the previous ones' names.
        """
        if self.operator is None:
            raise Refused(msg.NO_OPERATOR_FOR_CLAIMS)
        if self.step is not Step.ATTRACT:
            raise Refused(msg.CLAIMS_DURING_SESSION)
        op = self._professional(Act.CLAIMS)
        self.recent_claims = self.records.recent_claims(op.id, int(limit))
        if self.interrupted is not None:
            self._interrupted_listed = True
        return None

    def _started(self) -> None:
        """The kiosk (re)started: was the last bill cut off between its COMMIT and its screen?

        Only the claim number and time are kept here (no patient data): the panel says "check with
        the patient" and the list behind the PIN shows who it was.
        """
        self.interrupted = self.records.interrupted_claim()
        self._interrupted_listed = False
        if self.interrupted is not None:  # said on the panel only (``view()["interrupted"]``), not to the patient
            self._audit("claim.interrupted", str(self.interrupted.number), committed_at=self.interrupted.at)

    def _intent_cancel(self) -> str:
        if self.step is Step.PAYMENT:
            raise Refused("La facture est émise : terminez la session")
        self._audit("session.cancel", step=self.step.value)
        self._clear()
        return "Session annulée"

    # ------------------------------------------------------------------ identify
    def _card_inserted(self, event: CardInserted) -> str | None:
        if self.step is not Step.ATTRACT:
            raise self._not_now()
        if not event.beneficiaries:
            raise Refused("Carte Vitale sans bénéficiaire lisible")
        self.session.identify_source = "card"
        self.session.card_amo = dict(event.amo)
        self.session.card_data_stale = event.data_on is None or self.today() - event.data_on > CARD_DATA_MAX_AGE
        self._audit("identify.card", beneficiaries=len(event.beneficiaries))
        return self._offer_beneficiaries(event.beneficiaries)

    def _card_removed(self) -> str | None:
        self._audit("card.removed", step=self.step.value)
        if self.step is Step.CHOOSE_BENEFICIARY and self.session.identify_source == "card":
            self._clear()
            return "Carte retirée"
        return None

    def _offer_beneficiaries(self, beneficiaries: tuple[Beneficiary, ...]) -> str | None:
        self.session.beneficiaries = beneficiaries
        if len(beneficiaries) == 1:
            return self._beneficiary_chosen(beneficiaries[0])
        self.step = Step.CHOOSE_BENEFICIARY
        return "Choisissez la personne concernée"

    def _intent_choose_beneficiary(self, index: int | None = None, rank: int | None = None) -> str | None:
        if self.step is not Step.CHOOSE_BENEFICIARY:
            raise self._not_now()
        choices = self.session.beneficiaries
        if index is not None and 0 <= index < len(choices):
            return self._beneficiary_chosen(choices[index])
        for beneficiary in choices:
            if rank is not None and beneficiary.rank == rank:
                return self._beneficiary_chosen(beneficiary)
        raise Refused("Personne introuvable sur cette carte")

    def _beneficiary_chosen(self, beneficiary: Beneficiary) -> str | None:
        s = self.session
        s.beneficiary = beneficiary
        self.step = Step.IDENTITY
        if s.identify_source == "apcv" and beneficiary.nir in s.apcv_ins:
            s.ins = s.apcv_ins[beneficiary.nir]
            self._settle_identity(IdentityStatus.QUAL, "apcv", beneficiary.traits)
        else:
            result = self._call("la recherche INSi", lambda: self.teleservices.insi_search_card(beneficiary))
            self._insi_answer(result, beneficiary.traits)
        return self._after_identity_step()

    def _intent_search(
        self, birth_name: str, first_names: str, sex: str, birth_date: str, birth_place: str = ""
    ) -> str | None:
        if self.step is not Step.ATTRACT:
            raise self._not_now()
        self._professional(Act.IDENTITY)
        try:
            born = date.fromisoformat(birth_date)
        except ValueError:
            raise Refused("Date de naissance invalide (AAAA-MM-JJ)") from None
        traits = Traits(birth_name.upper(), first_names.upper(), sex, born, birth_place or None)
        self.session.identify_source = "search"
        self.step = Step.IDENTITY
        self._audit("identify.search")
        result = self._call("la recherche INSi", lambda: self.teleservices.insi_search_traits(traits))
        self._insi_answer(result, traits)
        return self._after_identity_step()

    def _scanned_apcv(self, token: OpaqueToken) -> str | None:
        if self.step is not Step.ATTRACT:
            raise self._not_now()
        try:
            context = self._call("l'appli carte Vitale", lambda: self.teleservices.apcv_context(token.raw))
        except TeleserviceRefused as refusal:
            raise Refused(refusal.message) from None
        if context is None:
            raise Refused("Appli carte Vitale indisponible hors ligne : utilisez la carte Vitale")
        self.session.identify_source = "apcv"
        self.session.apcv_ins = dict(context.ins)
        self._audit("identify.apcv", beneficiaries=len(context.beneficiaries))
        return self._offer_beneficiaries(context.beneficiaries)

    def _scanned_ins(self, ins_code: InsIdentity) -> str | None:
        if self.step is not Step.ATTRACT:
            raise self._not_now()
        traits = Traits(
            ins_code.birth_name, ins_code.first_names, ins_code.sex, ins_code.birth_date, ins_code.birth_place
        )
        self.session.identify_source = "ins-datamatrix"
        self.step = Step.IDENTITY
        self._audit("identify.ins-datamatrix")
        result = self._call("la vérification INSi", lambda: self.teleservices.insi_search_traits(traits))
        if (
            result is not None
            and result.outcome is InsiOutcome.FOUND
            and result.identities[0].matricule != ins_code.matricule
        ):
            self.notices.append("L'INS du document diffère de celui du téléservice")
        self._insi_answer(result, traits)
        return self._after_identity_step()

    # ------------------------------------------------------------------ identity (INSi, RNIV)
    def _insi_answer(self, result: InsiResult | None, traits: Traits) -> None:
        s = self.session
        if result is None:
            s.insi_pending = True
            self._settle_identity(IdentityStatus.PROV, "insi-unreachable", traits)
            return
        self._audit("insi.answer", outcome=result.outcome.value)
        match result.outcome:
            case InsiOutcome.FOUND:
                s.ins = result.identities[0]
                self._settle_identity(IdentityStatus.RECUP, "insi-00", traits)
            case InsiOutcome.SEVERAL if result.identities:
                s.identity_choices = result.identities
                self.notices.append("Plusieurs identités trouvées : le pharmacien choisit")
            case InsiOutcome.SEVERAL:  # the real service names none of them: nothing to choose from
                self._settle_identity(IdentityStatus.PROV, "insi-02", traits)
                self.notices.append(msg.INSI_SEVERAL_UNNAMED)
            case InsiOutcome.NONE:
                self._settle_identity(IdentityStatus.PROV, "insi-01", traits)
                self.notices.append("Identité introuvable : identité provisoire")

    def _intent_choose_identity(self, index: int) -> str | None:
        s = self.session
        if self.step is not Step.IDENTITY or not s.identity_choices:
            raise self._not_now()
        self._professional(Act.IDENTITY)
        if not 0 <= index < len(s.identity_choices):
            raise Refused("Identité introuvable dans la liste")
        s.ins = s.identity_choices[index]
        s.identity_choices = ()
        self._settle_identity(IdentityStatus.RECUP, "insi-02-chosen", s.ins.traits)
        return self._after_identity_step()

    def _settle_identity(self, status: IdentityStatus, reason: str, traits: Traits) -> None:
        s = self.session
        record = self.records.remember_patient(
            beneficiary=s.beneficiary,
            ins=s.ins,
            traits=s.ins.traits if s.ins else traits,
            status=status,
            reason=reason,
            operator_id=self.operator_id,
        )
        s.patient_id = record.id
        s.ins_status = record.status
        s.identity_doubtful = record.doubtful
        s.dp_consent = self.records.dp_consent(record.id)
        # Traits on file (or, for a new patient, the card's or the typed ones) against what INSi returned.
        if s.ins is not None:
            s.traits_to_confirm = _differences(record.traits_on_file or traits, s.ins.traits)
        elif record.traits_on_file is not None:
            s.traits_to_confirm = _differences(record.traits_on_file, traits)
        if record.doubtful:
            s.qualification_prompt = True  # at every visit, until a document settles the doubt
            self.notices.append(msg.DOUBTFUL)
        elif record.status is IdentityStatus.RECUP:
            if status is IdentityStatus.RECUP and record.new:
                left = self.records.start_qualification_prompts(record.id, self.settings.qualification_visits)
            else:
                left = self.records.use_qualification_prompt(record.id)
            s.qualification_prompt = left > 0
        if s.insi_pending:
            call = "insi_search_card" if s.beneficiary is not None else "insi_search_traits"
            self.records.enqueue_call(call, record.id)
            s.insi_pending = False

    def _intent_confirm_traits(self) -> str | None:
        if self.step is not Step.IDENTITY or not self.session.traits_to_confirm:
            raise self._not_now()
        self._professional(Act.IDENTITY)
        self._audit("identity.traits-confirmed", patient=self.session.patient_id)
        self.session.traits_to_confirm = {}
        return self._after_identity_step()

    # ------------------------------------------------------------------ identity document (RNIV)
    def _document_asked(self, *, later: bool) -> Session:
        """The session, if the pharmacist may answer the identity-document question now: when the
        identity step asks it, or (``later``) on their own initiative later in the session for an
        identity not yet qualified."""
        s = self.session
        if s.patient_id is None:
            raise self._not_now()
        if s.identity_choices or s.traits_to_confirm:
            raise Refused("Choisissez et confirmez d'abord l'identité")
        asked = self.step is Step.IDENTITY and s.qualification_prompt
        if not asked and not (
            later
            and self.step in (Step.RIGHTS, Step.PRESCRIPTION, Step.DISPENSATION, Step.CONTROL)
            and s.ins_status is not IdentityStatus.QUAL
        ):
            raise self._not_now()
        return s

    def _minor(self) -> bool:
        traits = self._patient_traits()
        if traits is None:
            return False
        today, born = self.today(), traits.birth_date
        return (today.year - born.year - ((today.month, today.day) < (born.month, born.day))) < 18

    def _documents(self) -> list[IdentityDocument]:
        """The documents the pharmacist may record for this patient (a minor's livret/acte too)."""
        return [d for d in IdentityDocument if self._minor() or not d.for_minor_only]

    @staticmethod
    def _document(code: str, *, missing: str) -> IdentityDocument:
        if not code:
            raise Refused(missing)
        try:
            return IdentityDocument(code)
        except ValueError:
            raise Refused(msg.DOCUMENT_UNKNOWN) from None

    def _intent_document_checked(self, document: str = "", guardian_document: str = "") -> str | None:
        """A document of high trust was shown and agrees with the INS traits: the identity is qualified.

        For a minor, a family record book or a birth certificate counts together with an identity
        document of the legal guardian (both recorded)."""
        self._document_asked(later=True)
        op = self._professional(Act.IDENTITY)
        shown = self._document(document, missing=msg.DOCUMENT_NEEDED)
        guardian: IdentityDocument | None = None
        if shown.for_minor_only:
            if not self._minor():
                raise Refused(msg.DOCUMENT_FOR_MINOR)
            guardian = self._document(guardian_document, missing=msg.GUARDIAN_NEEDED)
            if guardian.for_minor_only:
                raise Refused(msg.GUARDIAN_DOCUMENT)
        return self._document_answer(DocumentCheck.CHECKED, op, shown, guardian)

    def _intent_document_absent(self) -> str | None:
        """No document at hand: nothing changes, and the question returns at the next visits."""
        self._document_asked(later=False)
        return self._document_answer(DocumentCheck.ABSENT, self._professional(Act.IDENTITY))

    def _intent_document_refused(self) -> str | None:
        """The patient declines to show a document: their refusal is recorded and not asked again."""
        self._document_asked(later=False)
        return self._document_answer(DocumentCheck.REFUSED, self._professional(Act.IDENTITY))

    def _intent_document_contradicts(self) -> str | None:
        """The document contradicts the INS traits: the identity is not reliable (doubtful), never
        qualified, and the question comes back at every visit until a document settles it."""
        self._document_asked(later=True)
        return self._document_answer(DocumentCheck.CONTRADICTS, self._professional(Act.IDENTITY))

    def _document_answer(
        self,
        check: DocumentCheck,
        op: Operator,
        document: IdentityDocument | None = None,
        guardian: IdentityDocument | None = None,
    ) -> str | None:
        s = self.session
        s.ins_status, s.identity_doubtful = self.records.record_identity_check(
            s.patient_id or 0, check, op.id, document=document, guardian_document=guardian
        )
        self.notices.append(
            {
                DocumentCheck.CHECKED: msg.DOCUMENT_CHECKED.format(document=document.label if document else ""),
                DocumentCheck.ABSENT: msg.DOCUMENT_ABSENT,
                DocumentCheck.REFUSED: msg.DOCUMENT_REFUSED,
                DocumentCheck.CONTRADICTS: msg.DOUBTFUL,
            }[check]
        )
        asked = self.step is Step.IDENTITY
        s.qualification_prompt = False
        return self._after_identity_step() if asked else None

    def _after_identity_step(self) -> str | None:
        s = self.session
        if s.identity_choices or s.traits_to_confirm or s.qualification_prompt:
            return None
        self.step = Step.RIGHTS
        self._amo_rights()
        self._stored_amc_rights()
        if s.pending_prescription_id is not None:
            try:
                return self._fetch_prescription(s.pending_prescription_id)
            except Refused as refusal:  # the identity act stands; only the prescription noted earlier is refused
                s.pending_prescription_id = None
                self.notices.append(str(refusal))
        return None

    # ------------------------------------------------------------------ rights
    def _amo_rights(self) -> None:
        s = self.session
        beneficiary = s.beneficiary or _beneficiary_from_ins(s.ins)
        on_card = s.card_amo.get(beneficiary.nir) if beneficiary else None
        if on_card is not None and not s.card_data_stale and s.identify_source == "card":
            s.amo, s.amo_source = on_card, "card"
        elif beneficiary is not None:
            amo = self._call("les droits AMO (ADRi)", lambda: self.teleservices.adri(beneficiary, self.today()))
            if amo is not None:
                s.amo, s.amo_source = amo, "adri"
            elif on_card is not None:
                s.amo, s.amo_source = on_card, "card"
        if s.patient_id is not None:
            self.records.save_rights(s.patient_id, amo=s.amo, amc=None)
        self._audit("rights.amo", source=s.amo_source or "none")

    def _stored_amc_rights(self) -> None:
        s = self.session
        if s.patient_id is None:
            return
        stored = self.records.stored_amc(s.patient_id)
        if stored is None:
            return
        if stored.covers(self.today()):
            s.amc, s.amc_source = stored, "stored"
        else:
            self._dld(stored.amc_number, stored.member_number, stored.valid_to)

    def _dld(self, amc_number: str, member_number: str, ended: date) -> None:
        s = self.session
        nir = s.beneficiary.nir if s.beneficiary else (s.ins.matricule if s.ins else "")
        self.notices.append(msg.AMC_EXPIRED.format(day=msg.fr_date(ended)))
        try:
            renewed = self._call(
                "les droits mutuelle (DLD)",
                lambda: self.teleservices.dld(amc_number, member_number, nir, self.today()),
            )
        except TeleserviceRefused as refusal:
            self.notices.append(refusal.message)
            return
        self._audit("rights.dld", found=renewed is not None)
        if renewed is not None:
            s.amc, s.amc_source = renewed, "dld"
            if s.patient_id is not None:
                self.records.save_rights(s.patient_id, amo=None, amc=renewed)
            self.notices.append("Droits mutuelle renouvelés")

    def _scanned_attestation(self, attestation: AmcAttestation) -> str | None:
        s = self.session
        if self.step not in (Step.RIGHTS, Step.PRESCRIPTION, Step.DISPENSATION):
            raise self._not_now()
        if attestation.amc_number is None or attestation.member_number is None:
            raise Refused("Attestation mutuelle incomplète : saisissez les droits")
        nir = s.beneficiary.nir if s.beneficiary else (s.ins.matricule if s.ins else "")
        if attestation.valid_to is not None and attestation.valid_to < self.today():
            self._dld(attestation.amc_number, attestation.member_number, attestation.valid_to)
            return None
        try:
            rights = self._call(
                "les droits mutuelle (IDB)",
                lambda: self.teleservices.idb(
                    attestation.amc_number or "", attestation.member_number or "", nir, self.today()
                ),
            )
        except TeleserviceRefused as refusal:
            if refusal.code == "amc-expired":
                self._dld(attestation.amc_number, attestation.member_number, attestation.valid_to or self.today())
                return None
            raise Refused(refusal.message) from None
        if rights is None:
            rights = AmcRights(
                amc_number=attestation.amc_number,
                member_number=attestation.member_number,
                valid_from=attestation.valid_from or self.today(),
                valid_to=attestation.valid_to or self.today(),
                coverage_pct=100,
                accreditation=None,
                conventions=attestation.conventions,
            )
            s.amc, s.amc_source = rights, "attestation"
            if s.patient_id is not None:
                self.records.enqueue_call("idb", s.patient_id)
        else:
            s.amc, s.amc_source = rights, "idb"
        if s.patient_id is not None:
            self.records.save_rights(s.patient_id, amo=None, amc=s.amc)
        self._audit("rights.amc", source=s.amc_source)
        return "Droits mutuelle enregistrés"

    def _intent_continue(self) -> str | None:
        if self.step is Step.RIGHTS:
            self.step = Step.PRESCRIPTION
            return None
        if self.step is Step.DISPENSATION:
            return self._to_control()
        raise self._not_now()

    # ------------------------------------------------------------------ prescription
    def _scanned_eprescription(self, token: OpaqueToken) -> str | None:
        prescription_id = token.text or token.raw.hex()
        if self.step in (Step.ATTRACT, Step.CHOOSE_BENEFICIARY, Step.IDENTITY):
            self.session.pending_prescription_id = prescription_id
            return "Ordonnance notée : elle sera lue après l'identification"
        if self.step not in (Step.RIGHTS, Step.PRESCRIPTION) or self.session.prescription_confirmed:
            raise self._not_now()
        return self._fetch_prescription(prescription_id)

    def _fetch_prescription(self, prescription_id: str) -> str | None:
        """Fetch the prescription and compare its patient with the identified one; every check comes
        before the session changes, so a refusal here leaves the step where it was."""
        s = self.session
        dispensed = self.records.dispensed_renewals(prescription_id)
        try:
            prescription = self._call(
                "l'ordonnance numérique", lambda: self.teleservices.fetch_prescription(prescription_id)
            )
        except TeleserviceRefused as refusal:
            raise Refused(refusal.message) from None
        renewals = prescription.renewals if prescription is not None else 0
        if dispensed and set(range(renewals + 1)) <= dispensed:
            raise Refused(msg.PRESCRIPTION_DISPENSED)
        self._audit("prescription.scanned", prescription_id, fetched=prescription is not None)
        s.pending_prescription_id = None
        self.step = Step.PRESCRIPTION
        s.dispensed_renewals = dispensed
        if prescription is None:
            s.prescription_degraded = True
            s.pending_prescription_id = prescription_id
            return "Saisissez les lignes de l'ordonnance papier"
        s.prescription = prescription
        traits = self._patient_traits()
        s.prescription_mismatch = (
            _prescribed_for_differences(prescription.patient, traits)
            if prescription.patient is not None and traits is not None
            else []
        )
        if s.prescription_mismatch:
            self._audit("prescription.other-patient", prescription_id, traits=s.prescription_mismatch)
            self.notices.append(msg.PRESCRIPTION_OTHER_PATIENT)
        return f"Ordonnance du {msg.fr_date(prescription.prescribed_on)} : {len(prescription.lines)} ligne(s)"

    def _intent_accept_prescription_patient(self) -> str | None:
        """The pharmacist decides a prescription written with other traits is this patient's (a
        nickname, a typo by the prescriber): recorded with what differed and who decided."""
        s = self.session
        if self.step is not Step.PRESCRIPTION or not s.prescription_mismatch or s.prescription_confirmed:
            raise self._not_now()
        self._professional(Act.PRESCRIPTION)
        s.prescription_patient_accepted = True
        self._audit(
            "prescription.patient-accepted",
            s.prescription.prescription_id if s.prescription else "",
            traits=s.prescription_mismatch,
        )
        return "Ordonnance rattachée au patient"

    def _intent_enter_line(self, label: str, quantity: int, cip13: str | None = None, ald: bool = False) -> str | None:
        s = self.session
        if self.step is not Step.PRESCRIPTION or not s.prescription_degraded or s.prescription_confirmed:
            raise self._not_now()
        self._professional(Act.PRESCRIPTION)
        if quantity <= 0:
            raise Refused("Quantité invalide")
        s.entered_lines.append(PrescriptionLine(len(s.entered_lines) + 1, label, quantity, cip13, ald))
        return f"Ligne {len(s.entered_lines)} ajoutée"

    def _intent_confirm_prescription(self, renewal: int = 0) -> str | None:
        s = self.session
        if self.step is not Step.PRESCRIPTION or not s.lines():
            raise self._not_now()
        self._professional(Act.PRESCRIPTION)
        if s.prescription_mismatch and not s.prescription_patient_accepted:
            raise Refused(msg.PRESCRIPTION_OTHER_PATIENT)
        limit = s.prescription.renewals if s.prescription else renewal
        if not 0 <= renewal <= limit:
            raise Refused(f"Renouvellement {renewal} impossible (au plus {limit})")
        if renewal in s.dispensed_renewals:
            raise Refused(msg.PRESCRIPTION_DISPENSED if renewal == 0 else f"Renouvellement {renewal} déjà délivré")
        s.prescription_confirmed = True
        s.renewal = renewal
        self.step = Step.DISPENSATION
        self._audit(
            "prescription.confirmed",
            s.prescription.prescription_id if s.prescription else "",
            renewal=renewal,
            degraded=s.prescription_degraded,
        )
        return None

    def _intent_reject_prescription(self) -> str | None:
        s = self.session
        if self.step is not Step.PRESCRIPTION:
            raise self._not_now()
        self._professional(Act.PRESCRIPTION)
        self._audit("prescription.rejected")
        s.prescription, s.prescription_degraded, s.entered_lines = None, False, []
        s.pending_prescription_id = None
        s.prescription_mismatch, s.prescription_patient_accepted = [], False
        return "Ordonnance écartée"

    # ------------------------------------------------------------------ dispensation
    def _scanned_box(self, box: MedicineBox) -> str | None:
        s = self.session
        if self.step is not Step.DISPENSATION:
            raise self._not_now()
        if box.cip13 is None:
            raise Refused("Ce produit n'a pas de code CIP")
        if box.expiry is not None and box.expiry < self.today():
            raise Refused(msg.EXPIRED_BOX.format(day=msg.fr_date(box.expiry)))
        if box.serial is not None and (
            any(b.serial == box.serial and b.gtin == box.gtin for b in s.boxes)
            or self.records.serial_dispensed(box.gtin, box.serial)
        ):
            raise Refused(msg.SERIAL_AGAIN.format(serial=box.serial))
        product = self.products.get(box.cip13)
        if product is None:
            raise Refused(f"Produit inconnu (CIP {box.cip13})")
        line_no = self._line_for(box.cip13)
        s.boxes.append(
            DispensedBox(
                box.cip13,
                box.gtin,
                box.serial,
                box.lot,
                box.expiry.isoformat() if box.expiry else None,
                line_no,
            )
        )
        self._audit("dispensation.box", box.cip13, line=line_no)
        if line_no is None:
            return f"{product.name} : à quelle ligne correspond cette boîte ?"
        return product.name

    def _line_for(self, cip13: str) -> int | None:
        s = self.session
        for line in s.lines():
            taken = sum(1 for b in s.boxes if b.line_no == line.line_no)
            if line.cip13 == cip13 and taken < line.quantity:
                return line.line_no
        return None

    def _intent_assign_box(self, line: int, serial: str | None = None) -> str | None:
        s = self.session
        if self.step is not Step.DISPENSATION:
            raise self._not_now()
        self._professional(Act.DISPENSATION)
        if line not in {known.line_no for known in s.lines()}:
            raise Refused(f"Ligne {line} inconnue")
        for box in s.boxes:
            if box.line_no is None and (serial is None or box.serial == serial):
                box.line_no, box.substitution = line, True
                self._audit("dispensation.substitution", box.cip13, line=line)
                return f"Substitution enregistrée sur la ligne {line}"
        raise Refused("Aucune boîte à affecter")

    def _intent_remove_box(self, serial: str) -> str | None:
        s = self.session
        if self.step is not Step.DISPENSATION:
            raise self._not_now()
        self._professional(Act.DISPENSATION)
        kept = [b for b in s.boxes if b.serial != serial]
        if len(kept) == len(s.boxes):
            raise Refused("Boîte introuvable")
        s.boxes = kept
        self._audit("dispensation.box-removed")
        return "Boîte retirée"

    def _to_control(self) -> str | None:
        if not self.session.boxes:
            raise Refused("Aucune boîte scannée")
        if any(b.line_no is None for b in self.session.boxes):
            raise Refused("Une boîte n'est affectée à aucune ligne")
        self.step = Step.CONTROL
        gaps = self.session.discrepancies()
        self._audit("control.opened", discrepancies=len(gaps))
        return f"{len(gaps)} écart(s) à contrôler" if gaps else "Aucun écart"

    # ------------------------------------------------------------------ control and billing
    def _intent_annotate(self, text: str) -> str | None:
        if self.step is not Step.CONTROL:
            raise self._not_now()
        self._professional(Act.DISPENSATION)
        self.session.annotation = text.strip()[:500]
        self._audit("control.annotated")
        return "Note enregistrée"

    def _intent_validate(
        self, pin: str | None = None, operator: int | str | None = None, cps: bool = False
    ) -> str | None:
        """Validate the control step: with a personal PIN, or (``cps``) on the open CPS session alone,
        because the card already proved who is at the counter and the card leaving ends the session."""
        s = self.session
        if self.step is not Step.CONTROL:
            raise self._not_now()
        if cps:
            op = self.cps_operator
            if op is None or op.id != self.operator_id or operator not in (None, op.id, op.name):
                raise Refused(msg.CPS_NEEDED)
        else:
            who = operator if operator is not None else self.operator_id
            if who is None:
                raise Refused("Identifiez-vous pour valider")
            if not pin:
                raise Refused("Saisissez votre code personnel")
            op = self._authenticate(who, pin)
        if not op.role.may_validate:
            raise Refused(msg.NEED_PHARMACIST, audit=(op.id, "control.validate-refused", "", {"role": op.role.value}))
        if s.patient_id is None:
            raise Refused("Patient non identifié")
        if self.operator is not None and self.operator.id == op.id:
            self._operator_active = self.clock()
        s.validated_by = op.id
        with self.records.unit_of_work():  # after the PIN check, which commits on its own
            return self._bill(op.id)

    def _bill(self, operator_id: int) -> str | None:
        s = self.session
        lines = {line.line_no: line for line in s.lines()}
        items: list[BillItem] = []
        for box in s.boxes:
            product = self.products.get(box.cip13)
            if product is None:  # checked at scan time; the table cannot change during a session
                raise Refused(f"Produit inconnu (CIP {box.cip13})")
            line = lines.get(box.line_no) if box.line_no is not None else None
            items.append(BillItem(product, 1, ald=bool(line and line.ald)))
        bill = compute_bill(items, amo=s.amo, amc=s.amc, day=self.today())
        prescription_id = s.prescription.prescription_id if s.prescription else (s.pending_prescription_id or "")
        # Execution data step 1 is sent now when online, so a prescription already dispensed elsewhere
        # is refused before the claim exists; offline it goes through the outbox with the claim.
        if prescription_id and self.online and s.prescription is not None:
            try:
                self.teleservices.deliver(
                    "execution",
                    self.records.execution_key(prescription_id, s.renewal),
                    _execution(prescription_id, s, step=1),
                    attempts=1,
                )
                executed = True
            except TeleserviceRefused as refusal:
                if refusal.code == "ALREADY_DISPENSED":  # by another pharmacy: this box has no record of it
                    raise Refused(msg.PRESCRIPTION_DISPENSED_ELSEWHERE) from None
                raise Refused(refusal.message) from None
            except TeleserviceUnavailable:
                self.online = False
                executed = False
        else:
            executed = False
        draft = ClaimDraft(
            patient_id=s.patient_id or 0,
            operator_id=operator_id,
            prescription_id=prescription_id,
            prescription=s.prescription,
            entered_lines=tuple(s.entered_lines),
            renewal=s.renewal,
            boxes=tuple(s.boxes),
            bill=bill,
            amo=s.amo,
            amc=s.amc,
            annotation=s.annotation,
            discrepancies=tuple(s.discrepancies()),
            execution_sent=executed,
            execution_payload=_execution(prescription_id, s, step=1) if prescription_id else None,
            fetch_pending=s.prescription_degraded,
            day=self.today(),
            dp_feed=bool(s.dp_consent) and s.beneficiary is not None,
            patient_mailbox=self._mailbox_reachable(),
        )
        claim = self.records.record_claim(draft)
        s.bill = bill
        s.claim_number = claim.number
        self.step = Step.PAYMENT
        if bill.to_pay_cents == 0:
            return "Rien à payer"
        return f"À payer : {msg.euros(bill.to_pay_cents)}"

    # ------------------------------------------------------------------ Dossier Pharmaceutique, MSSanté
    def _dp_patient(self) -> Beneficiary:
        s = self.session
        if self.step in (Step.ATTRACT, Step.CHOOSE_BENEFICIARY) or s.patient_id is None:
            raise self._not_now()
        if s.beneficiary is None:
            raise Refused(msg.DP_NEEDS_CARD)
        return s.beneficiary

    def _intent_dp_consent(self, agreed: bool = True) -> str | None:
        """The patient's answer about their Dossier Pharmaceutique, asked by the pharmacist; kept for
        the next visits. With it, each dispensation is fed to the DP (through the outbox)."""
        self._dp_patient()
        op = self._professional(Act.DP)
        s = self.session
        self.records.set_dp_consent(s.patient_id or 0, bool(agreed), op.id)
        s.dp_consent = bool(agreed)
        if not agreed:
            s.dp_history = None
        return msg.DP_AGREED if agreed else msg.DP_DECLINED

    def _intent_dp_consult(self, months: int | None = None) -> str | None:
        """The last months of the patient's dispensations in every pharmacy, for the pharmacist's panel
        (never the patient screen: ``view()`` gives them only while an operator is logged in)."""
        beneficiary = self._dp_patient()
        op = self._professional(Act.DP)
        s = self.session
        if not s.dp_consent:
            raise Refused(msg.DP_NO_CONSENT)
        since = self.today() - timedelta(days=31 * (months or self.settings.dp_months))
        found = self._call(
            "le dossier pharmaceutique",
            lambda: self.teleservices.dp_consult(beneficiary, since),
            unavailable=msg.DP_OFFLINE,
        )
        if found is None:
            return None
        s.dp_history = list(found)
        self.records.audit_dp_consulted(s.patient_id or 0, op.id, len(found))
        return msg.DP_CONSULTED.format(count=len(found))

    def _mailbox_reachable(self) -> bool:
        """Mon Espace Santé's mailbox is addressed by the INS: only for a qualified, undoubted identity."""
        s = self.session
        return s.ins is not None and s.ins_status is IdentityStatus.QUAL and not s.identity_doubtful

    def _intent_prescriber_summary(self, agreed: bool = True) -> str | None:
        """With the patient's agreement, the dispensing summary goes to the prescriber over MSSanté."""
        s = self.session
        if self.step is not Step.PAYMENT or s.claim_number is None or s.prescription is None:
            raise self._not_now()
        op = self._professional(Act.MESSAGING)
        if not agreed:
            self._audit("mssante.prescriber-declined", str(s.claim_number))
            return msg.DOCUMENT_REFUSED
        if not self._mailbox_reachable():
            raise Refused(msg.NOT_QUALIFIED_MAIL)
        if not s.prescription.prescriber_mailbox:
            raise Refused(msg.PRESCRIBER_NO_MAILBOX)
        self.records.enqueue_prescriber_summary(s.claim_number, op.id)
        return msg.PRESCRIBER_SUMMARY

    # ------------------------------------------------------------------ DMP and close
    def _intent_dmp_document(self, kind: str, visibility: str = "all") -> str | None:
        s = self.session
        if self.step not in (Step.CONTROL, Step.PAYMENT) or s.patient_id is None:
            raise self._not_now()
        op = self._professional(Act.DMP)
        if s.identity_doubtful:
            raise Refused(msg.DOUBTFUL)
        if s.ins is None or s.ins_status is not IdentityStatus.QUAL:
            raise Refused(msg.NOT_QUALIFIED)
        try:
            chosen = Visibility(visibility)
        except ValueError:
            raise Refused("Visibilité inconnue") from None
        if kind not in ("vaccination", "pharmaceutical-interview", "medication-review"):
            raise Refused("Type de document inconnu")
        self.records.enqueue_dmp(s.patient_id, kind, chosen, op.id, patient_mailbox=self._mailbox_reachable())
        return "Document envoyé au DMP"

    def _intent_close(self) -> str | None:
        s = self.session
        if self.step is not Step.PAYMENT or s.bill is None:
            raise self._not_now()
        receipt = [f"Facture n° {s.claim_number}"]
        grouped: dict[str, list[int]] = {}  # identical boxes on one line: « DOLIPRANE ×2 »
        for line in s.bill.lines:
            count_total = grouped.setdefault(line.name, [0, 0])
            count_total[0] += line.quantity
            count_total[1] += line.total_cents
        receipt += [f"{name} ×{count} : {msg.euros(total)}" for name, (count, total) in grouped.items()]
        receipt.append(f"Payé par l'Assurance Maladie : {msg.euros(s.bill.amo_cents)}")
        receipt.append(f"Payé par la mutuelle : {msg.euros(s.bill.amc_cents)}")
        receipt.append(f"Réglé : {msg.euros(s.bill.to_pay_cents)}")
        self.last_outcome = self.outcome()
        self.last_outcome["receipt"] = receipt
        self._audit("session.closed", claim=s.claim_number)
        self._clear()
        return "Merci, à bientôt"

    def _intent_send_batch(self) -> str | None:
        if self.step is not Step.ATTRACT:
            raise self._not_now()
        op = self._professional(Act.BATCH)
        batch = self.records.close_batch(op.id)
        if batch is None:
            return "Aucune facture à télétransmettre"
        return f"Lot {batch} prêt à l'envoi"

    def _intent_resubmit_rejected(self, claims: list[int] | None = None) -> str | None:
        """Send again, with their numbers, claims a negative acknowledgement refused (None: all of them),
        in the open batch (``send_batch`` then sends it). As the rejection advises, their patients' AMO
        rights are read again from ADRi first, and each claim is addressed to the fund they name; so it
        is refused offline, and when ADRi does not know the patient."""
        from functools import partial

        from appliance.store.resubmission import ClaimAlreadyResubmitted, ClaimNotRejected, UnknownClaim

        if self.step is not Step.ATTRACT:
            raise self._not_now()
        op = self._professional(Act.BATCH)
        try:
            found = self.records.rejected_claims(None if claims is None else [int(n) for n in claims])
            if not found:
                return "Aucune facture rejetée à refacturer"
            rights, day = {}, self.today()
            for patient_id in sorted({c.patient_id for c in found}):
                beneficiary = self.records.beneficiary_of(patient_id) or _beneficiary_from_ins(
                    self.records.ins_of(patient_id)
                )
                if beneficiary is None:  # identified by traits only: nothing to ask ADRi with
                    continue
                try:
                    amo = self._call("les droits AMO (ADRi)", partial(self.teleservices.adri, beneficiary, day))
                except TeleserviceRefused as refusal:
                    raise Refused(f"Facture(s) non remise(s) : {refusal.message}") from None
                if amo is None:
                    raise Refused("Droits AMO non relus (hors ligne) : refacturez une fois la connexion revenue")
                rights[patient_id] = amo
            done = self.records.resubmit_rejected([c.number for c in found], op.id, rights=rights)
        except UnknownClaim as refusal:
            raise Refused(f"Facture n° {refusal.number} inconnue") from None
        except ClaimAlreadyResubmitted as refusal:
            raise Refused(f"Facture n° {refusal.number} déjà remise dans le lot {refusal.batch_number}") from None
        except ClaimNotRejected as refusal:
            raise Refused(f"Facture n° {refusal.number} non rejetée : rien à refacturer") from None
        if done is None:
            return "Aucune facture rejetée à refacturer"
        corrected = f", dont {len(done.corrected)} corrigée(s) (caisse d'assurance maladie)" if done.corrected else ""
        return f"{len(done.claims)} facture(s) remise(s) dans le lot {done.batch_number}{corrected}"

    # ------------------------------------------------------------------ scans
    def _scanned(self, code: Any) -> str | None:
        if not code.valid:
            if code.kind is CodeKind.UNKNOWN:
                raise Refused(msg.UNKNOWN_CODE)
            raise Refused(f"{msg.UNREADABLE} ({'; '.join(code.errors)})")
        match code.kind:
            case CodeKind.APCV:
                return self._scanned_apcv(code.payload)
            case CodeKind.INS:
                return self._scanned_ins(code.payload)
            case CodeKind.EPRESCRIPTION:
                return self._scanned_eprescription(code.payload)
            case CodeKind.AMC_ATTESTATION:
                return self._scanned_attestation(code.payload)
            case CodeKind.GS1:
                return self._scanned_box(code.payload)
            case _:
                raise self._not_now()

    # ------------------------------------------------------------------ views
    def outcome(self) -> dict[str, Any]:
        """What the session came to, for the scenario transcript and the receipt."""
        s = self.session
        bill = s.bill
        return {
            "patient": self._patient_summary(),
            "ins_status": s.ins_status.value if s.ins_status else None,
            "ins_oid": s.ins.oid if s.ins else None,
            "rights": {
                "amo": s.amo_source,
                "amo_valid": bool(s.amo and s.amo.covers(self.today())),
                "amc": s.amc_source,
                "amc_accreditation": s.amc.accreditation if s.amc else None,
            },
            "prescription": s.prescription.prescription_id if s.prescription else None,
            "degraded": s.prescription_degraded,
            "lines": [
                {"cip13": b.cip13, "line": b.line_no, "serial": b.serial, "substitution": b.substitution}
                for b in s.boxes
            ],
            "discrepancies": s.discrepancies(),
            "claim": s.claim_number,
            "amounts": None
            if bill is None
            else {
                "total": bill.total_cents,
                "amo": bill.amo_cents,
                "amc": bill.amc_cents,
                "patient": bill.patient_share_cents,
                "to_pay": bill.to_pay_cents,
            },
        }

    def _patient_traits(self) -> Traits | None:
        s = self.session
        return s.ins.traits if s.ins else (s.beneficiary.traits if s.beneficiary else None)

    def _pending_act(self) -> str | None:
        """What the session waits for from the pharmacist (the patient screen says so meanwhile)."""
        s = self.session
        match self.step:
            case Step.IDENTITY if s.identity_choices:
                return "choose-identity"
            case Step.IDENTITY if s.traits_to_confirm:
                return "confirm-traits"
            case Step.IDENTITY if s.qualification_prompt:
                return "identity-document"
            case Step.PRESCRIPTION if s.prescription_mismatch and not s.prescription_patient_accepted:
                return "prescription-patient"
            case Step.PRESCRIPTION if s.prescription_degraded and not s.entered_lines:
                return "enter-lines"
            case Step.PRESCRIPTION if s.lines():
                return "confirm-prescription"
            case Step.DISPENSATION if any(b.line_no is None for b in s.boxes):
                return "assign-box"
            case Step.CONTROL:
                return "validate"
        return None

    def _patient_summary(self) -> dict[str, Any] | None:
        """Who the session is for, as the screen shows it (no NIR)."""
        s = self.session
        if s.patient_id is None:
            return None
        traits = s.ins.traits if s.ins else (s.beneficiary.traits if s.beneficiary else None)
        return {
            "id": s.patient_id,
            "birth_name": traits.birth_name if traits else None,
            "first_names": traits.first_names if traits else None,
            "birth_date": traits.birth_date.isoformat() if traits else None,
        }

    def view(self) -> dict[str, Any]:
        """What the screens show now: a read-only projection for the kiosk (never a NIR or an INS matricule).

        The counts (``identity_choices``, ``lines``, ``boxes``) stay numbers for the scenario scripts;
        the kiosk's details sit beside them (``*_list``, ``rights``, ``prescription``, ``amounts``...).
        """
        s = self.session
        today = self.today()
        traits = self._patient_traits()
        pending = self._pending_act()
        minor = self._minor() if self.step is Step.IDENTITY else False
        return {
            "step": self.step.value,
            "online": self.online,
            "operator": self.operator is not None,
            "operator_name": self.operator.name if self.operator is not None else None,
            "cps": self.cps_operator is not None,
            "pending_act": pending,
            "pharmacist_needed": msg.WAITING_FOR.get(pending) if pending else None,
            "beneficiaries": [
                {"rank": b.rank, "first_names": b.traits.first_names, "birth_name": b.traits.birth_name}
                for b in s.beneficiaries
            ]
            if self.step is Step.CHOOSE_BENEFICIARY
            else [],
            "patient": None
            if traits is None or self.step is Step.ATTRACT
            else {
                "first_names": traits.first_names,
                "birth_name": traits.birth_name,
                "birth_date": msg.fr_date(traits.birth_date),
            },
            "identity_choices": len(s.identity_choices),
            "identity_choice_list": [
                {
                    "first_names": ins.traits.first_names,
                    "birth_name": ins.traits.birth_name,
                    "sex": ins.traits.sex,
                    "birth_date": msg.fr_date(ins.traits.birth_date),
                    "birth_place": ins.traits.birth_place or "",
                }
                for ins in s.identity_choices
            ],
            "traits_to_confirm": sorted(s.traits_to_confirm),
            "traits_differences": [
                {"trait": name, "label": TRAIT_LABELS.get(name, name), "on_file": old, "now": new}
                for name, (old, new) in sorted(s.traits_to_confirm.items())
            ],
            "qualification_prompt": s.qualification_prompt,
            "identity_doubtful": s.identity_doubtful,
            "dp": None
            if s.patient_id is None or self.step is Step.ATTRACT
            else {
                "consent": s.dp_consent,
                "consulted": s.dp_history is not None,
                "history": [
                    {
                        "day": msg.fr_date(e.day),
                        "label": e.label,
                        "quantity": e.quantity,
                        "pharmacy": e.pharmacy,
                    }
                    for e in s.dp_history
                ]
                if s.dp_history is not None and self.operator is not None
                else [],
            },
            "mailbox": self._mailbox_reachable() and self.step is not Step.ATTRACT,
            "prescriber_mailbox": bool(s.prescription and s.prescription.prescriber_mailbox),
            "minor": minor,
            "documents": [{"code": d.value, "label": d.label} for d in self._documents()]
            if pending == "identity-document"
            else [],
            "guardian_documents": [
                {"code": d.value, "label": d.label} for d in IdentityDocument if not d.for_minor_only
            ]
            if pending == "identity-document" and minor
            else [],
            "ins_status": s.ins_status.value if s.ins_status else None,
            "rights": {
                "amo": None
                if s.amo is None
                else {
                    "source": s.amo_source,
                    "valid": s.amo.covers(today),
                    "valid_to": msg.fr_date(s.amo.valid_to),
                    "ald": s.amo.ald,
                    "c2s": s.amo.c2s,
                },
                "amc": None
                if s.amc is None
                else {
                    "source": s.amc_source,
                    "valid": s.amc.covers(today),
                    "valid_to": msg.fr_date(s.amc.valid_to),
                    "coverage_pct": s.amc.coverage_pct,
                },
            },
            "prescription": None
            if not s.lines() and not s.prescription_degraded
            else {
                "prescriber": s.prescription.prescriber if s.prescription else "",
                "prescribed_on": msg.fr_date(s.prescription.prescribed_on) if s.prescription else "",
                "renewals": s.prescription.renewals if s.prescription else 0,
                "renewal": s.renewal,
                "degraded": s.prescription_degraded,
                "confirmed": s.prescription_confirmed,
                "patient": None
                if s.prescription is None or s.prescription.patient is None
                else {
                    "first_names": s.prescription.patient.first_names,
                    "birth_name": s.prescription.patient.birth_name,
                    "birth_date": msg.fr_date(s.prescription.patient.birth_date),
                },
                "mismatch": [TRAIT_LABELS[name] for name in s.prescription_mismatch],
                "patient_accepted": s.prescription_patient_accepted,
            },
            "lines": len(s.lines()),
            "line_list": [
                {
                    "line": line.line_no,
                    "label": line.label,
                    "quantity": line.quantity,
                    "dispensed": sum(1 for b in s.boxes if b.line_no == line.line_no),
                    "ald": line.ald,
                }
                for line in s.lines()
            ],
            "boxes": len(s.boxes),
            "box_list": [
                {
                    "name": product.name if (product := self.products.get(b.cip13)) else b.cip13,
                    "cip13": b.cip13,
                    "serial": b.serial or "",
                    "expiry": msg.fr_date(date.fromisoformat(b.expiry)) if b.expiry else "",
                    "line": b.line_no,
                    "substitution": b.substitution,
                }
                for b in s.boxes
            ],
            "discrepancies": s.discrepancies() if self.step in (Step.DISPENSATION, Step.CONTROL) else [],
            "annotation": s.annotation,
            "to_pay": s.bill.to_pay_cents if s.bill else None,
            "amounts": None
            if s.bill is None
            else {
                "total": s.bill.total_cents,
                "amo": s.bill.amo_cents,
                "amc": s.bill.amc_cents,
                "to_pay": s.bill.to_pay_cents,
            },
            "claim": s.claim_number,
            "receipt": list(self.last_outcome.get("receipt", []))
            if self.step is Step.ATTRACT and self.last_outcome
            else [],
            "later": self._completed_later(),
            "recent_claims": [
                {
                    "claim": c.number,
                    "day": msg.fr_day(c.at),
                    "time": msg.fr_time(c.at),
                    "when": msg.fr_time(c.at)
                    if msg.fr_day(c.at) == msg.fr_day(self.clock())
                    else f"{msg.fr_day(c.at)} {msg.fr_time(c.at)}",
                    "total": c.total_cents,
                    "amo": c.amo_cents,
                    "amc": c.amc_cents,
                    "patient": c.patient_cents,
                    "to_pay": c.to_pay_cents,
                    "operator": c.operator,
                    "initials": _initials(c.first_names, c.birth_name),
                    "status": c.status,
                    "interrupted": self.interrupted is not None and c.number == self.interrupted.number,
                }
                for c in self.recent_claims
            ]
            if self.operator_id is not None and self.step is Step.ATTRACT
            else [],
            "interrupted": None
            if self.interrupted is None
            else {
                "claim": self.interrupted.number,
                "time": msg.fr_time(self.interrupted.at),
                "text": msg.INTERRUPTED.format(claim=self.interrupted.number, time=msg.fr_time(self.interrupted.at)),
            },
        }

    def _completed_later(self) -> list[str]:
        """What the session left to the outbox for lack of network, in the words of the offline notice."""
        s = self.session
        later: list[str] = []
        if s.ins is None and s.ins_status is IdentityStatus.PROV and not self.online:
            later.append("la recherche INSi")
        if s.amo_source == "card" and s.card_data_stale and not self.online:
            later.append("les droits AMO (ADRi)")
        if s.amc_source == "attestation":
            later.append("les droits mutuelle (IDB)")
        if s.prescription_degraded:
            later.append("l'ordonnance numérique")
        return later


TRAIT_LABELS = {
    "birth_name": "Nom de naissance",
    "first_names": "Prénoms",
    "sex": "Sexe",
    "birth_date": "Date de naissance",
    "birth_place": "Lieu de naissance",
}
"""The INS traits as the identity screen names them."""


def _differences(on_file: Traits, now: Traits) -> dict[str, tuple[str, str]]:
    diffs: dict[str, tuple[str, str]] = {}
    for name in ("birth_name", "first_names", "sex", "birth_date", "birth_place"):
        old, new = getattr(on_file, name), getattr(now, name)
        if old is not None and new is not None and str(old) != str(new):
            diffs[name] = (str(old), str(new))
    return diffs


def _folded(text: str) -> list[str]:
    """Name words without accents, case, hyphens or apostrophes (« Marie-Hélène » ~ « MARIE HELENE »)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").upper()
    return plain.replace("-", " ").replace("'", " ").split()


def _prescribed_for_differences(written: PrescribedFor, patient: Traits) -> list[str]:
    """The traits by which the patient written on a prescription is not the identified patient.

    Prescribers write the usual first name only, so the first one written must be one of the
    patient's first names; birth name and birth date must be the same.
    """
    differ: list[str] = []
    if _folded(written.birth_name) != _folded(patient.birth_name):
        differ.append("birth_name")
    first = _folded(written.first_names)
    if not first or first[0] not in _folded(patient.first_names):
        differ.append("first_names")
    if written.birth_date != patient.birth_date:
        differ.append("birth_date")
    return differ


def _initials(first_names: str, birth_name: str) -> str:
    """« M. D. » for Marie DURAND: the last claims' list never shows a name in full (the screen faces
    the patient)."""
    parts = [words[0][0] + "." for words in (_folded(first_names), _folded(birth_name)) if words]
    return " ".join(parts)


def _beneficiary_from_ins(ins: Ins | None) -> Beneficiary | None:
    if ins is None:
        return None
    return Beneficiary(nir=ins.matricule, rank=1, traits=ins.traits, holder_nir=ins.matricule)


def _execution(prescription_id: str, s: Session, *, step: int) -> dict[str, Any]:
    """Execution data for the ePrescription service: what was handed out for which line."""
    return {
        "prescription_id": prescription_id,
        "step": step,
        "renewal": s.renewal,
        "lines": [{"line": b.line_no, "cip13": b.cip13, "serial": b.serial, "lot": b.lot} for b in s.boxes],
    }
