"""The matcher: each claim part -> its remittance line(s) -> the bank credit that paid it.

Pure: no database, no clock (``as_of`` is given), same inputs, same result. Rules, in order:

1. **Manual matches** first: a remittance the pharmacist linked to a credit is matched to it (rule
   ``manual``), one they unlinked is left out of the automatic rules.
2. **Reference**: a credit whose text (label, remittance information, end-to-end id) contains, as whole
   words, the payment reference of one or more remittances, and whose amount equals their sum (within
   the amount tolerance) pays them (``reference``); if only a subset of them adds up, and only one
   subset does, that subset (``reference-subset``). A reference found with an amount that does not add
   up is not matched: it is proposed for review.
3. **Amount, payer and dates**, for credits the reference left: the credit must name a payer (its code
   or name, or a configured alias); the remittances considered are that payer's, with a payment date
   from ``credit_days_after`` days before the booking to ``credit_days_before`` days after it. The
   credit pays: one remittance of exactly its amount (``amount``), or some of the remittances of one
   payment day (``amount-same-day``), or every remittance of a run of consecutive payment days
   (``amount-run``), tried in that order. A rule matches only when it finds exactly one solution; two
   or more are proposed for review, never guessed. Arbitrary subsets across days are never searched:
   with dozens of remittances some subset adds up to almost any amount, which is how false matches
   are made.

Then each expected claim part gets its status (see :class:`~appliance.payments.model.Status`), and
each credit is matched, unknown (it names a payer or a payment word but nothing explains it) or
simply not a payer's.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from appliance.payments.model import (
    NOT_CREDITED_ACTION,
    OVERDUE_ACTION,
    PARTIAL_ACTION,
    UNKNOWN_CREDIT_ACTION,
    BankCredit,
    ExpectedPart,
    LineStatus,
    ManualMatch,
    MatchConfig,
    Part,
    Remittance,
    RemittanceLine,
    Status,
    normalise,
)

PAYER_WORDS = (
    "CPAM",
    "CNAM",
    "CGSS",
    "MSA",
    "ASSURANCE MALADIE",
    "CAISSE PRIMAIRE",
    "MUTUELLE",
    "PREVOYANCE",
    "TIERS PAYANT",
    "NOEMIE",
    "RSP",
)
"""Words that make an unexplained credit a payer's (reported as unknown) rather than some other credit."""


def words(text: str) -> str:
    """Upper-case ASCII words separated by single spaces, padded: for whole-word searches."""
    stripped = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").upper()
    return " " + " ".join(re.findall(r"[A-Z0-9]+", stripped)) + " "


@dataclass(frozen=True, slots=True)
class RemittanceResult:
    remittance: Remittance
    status: Status | None
    """MATCHED, PAID_NOT_CREDITED or AWAITING_CREDIT; None for a remittance of rejections only."""
    credit_key: str | None = None
    rule: str = ""


@dataclass(frozen=True, slots=True)
class CreditResult:
    credit: BankCredit
    status: Status | None
    """MATCHED or CREDIT_UNKNOWN; None when the credit is not a payer's (card takings, patients...)."""
    remittance_ids: tuple[str, ...] = ()
    rule: str = ""
    action: str = ""


@dataclass(frozen=True, slots=True)
class PartResult:
    claim_number: int
    part: Part
    status: Status
    expected_cents: int
    remitted_cents: int
    credited_cents: int
    billed_on: date | None
    payer: str = ""
    batch_number: str = ""
    reason: str = ""
    action: str = ""
    remittance_ids: tuple[str, ...] = ()
    credit_keys: tuple[str, ...] = ()

    @property
    def outstanding_cents(self) -> int:
        """What is still to come in: expected minus credited (0 for a rejection, which will not come)."""
        if self.status is Status.REJECTED and self.remitted_cents == 0:
            return 0
        return max(self.expected_cents - self.credited_cents, 0)


@dataclass(frozen=True, slots=True)
class Suggestion:
    credit_key: str
    remittance_ids: tuple[str, ...]
    why: str


@dataclass(frozen=True, slots=True)
class Reconciliation:
    as_of: date
    statement_end: date | None
    config: MatchConfig
    parts: tuple[PartResult, ...]
    remittances: tuple[RemittanceResult, ...]
    credits: tuple[CreditResult, ...]
    unknown_lines: tuple[RemittanceLine, ...]
    suggestions: tuple[Suggestion, ...]
    claims_known: bool
    """False when no claim list was given (no database): parts are then those the remittances name."""
    warnings: tuple[str, ...] = ()
    """What the inputs skipped and why (a bank statement of a non-EUR account...), for the report."""

    @property
    def matches(self) -> dict[str, tuple[str, str]]:
        """remittance id -> (credit key, rule)."""
        return {r.remittance.remittance_id: (r.credit_key, r.rule) for r in self.remittances if r.credit_key}


@dataclass(slots=True)
class _State:
    config: MatchConfig
    remittances: dict[str, Remittance]
    matched: dict[str, tuple[str, str]] = field(default_factory=dict)  # remittance id -> (credit key, rule)
    used_credits: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    excluded: set[str] = field(default_factory=set)  # unlinked by hand
    suggestions: list[Suggestion] = field(default_factory=list)

    def free(self, remittance_id: str) -> bool:
        return remittance_id not in self.matched and remittance_id not in self.excluded

    def link(self, credit: BankCredit, chosen: Sequence[Remittance], rule: str) -> None:
        for r in chosen:
            self.matched[r.remittance_id] = (credit.key, rule)
        self.used_credits[credit.key] = (tuple(r.remittance_id for r in chosen), rule)


def reconcile(
    remittances: Sequence[Remittance],
    credits: Sequence[BankCredit],
    *,
    expected: Sequence[ExpectedPart] | None = None,
    manual: Sequence[ManualMatch] = (),
    config: MatchConfig | None = None,
    as_of: date | None = None,
    statement_end: date | None = None,
    warnings: Sequence[str] = (),
) -> Reconciliation:
    """Match everything; ``expected`` None means no claim list (the remittances say what was billed).
    ``warnings`` (what reading the files skipped) are carried to the report."""
    config = config or MatchConfig()
    ordered_credits = sorted(credits, key=lambda c: (c.booked_on, c.key))
    if statement_end is None:
        statement_end = max((c.booked_on for c in credits), default=None)
    if as_of is None:
        days = [c.booked_on for c in credits] + [r.paid_on for r in remittances]
        as_of = max(days, default=date.today())
    state = _State(config, {r.remittance_id: r for r in remittances})
    by_key = {c.key: c for c in credits}
    _apply_manual(state, manual, by_key)
    payable = [r for r in sorted(remittances, key=lambda r: (r.paid_on, r.remittance_id)) if r.total_cents > 0]
    _by_reference(state, ordered_credits, payable)
    aliases = _aliases(remittances, config)
    _by_amount(state, ordered_credits, payable, aliases)

    remittance_results = tuple(_remittance_result(state, r, statement_end) for r in state.remittances.values())
    status_of = {r.remittance.remittance_id: r.status for r in remittance_results}
    credit_results = tuple(_credit_result(state, c, aliases) for c in ordered_credits)
    parts, unknown = _parts(state, remittances, expected, as_of, config, status_of)
    return Reconciliation(
        as_of=as_of,
        statement_end=statement_end,
        config=config,
        parts=parts,
        remittances=tuple(sorted(remittance_results, key=lambda r: (r.remittance.paid_on, r.remittance.remittance_id))),
        credits=credit_results,
        unknown_lines=unknown,
        suggestions=tuple(s for s in state.suggestions if s.credit_key not in state.used_credits),
        claims_known=expected is not None,
        warnings=tuple(warnings),
    )


def _apply_manual(state: _State, manual: Sequence[ManualMatch], credits: dict[str, BankCredit]) -> None:
    linked: dict[str, list[Remittance]] = defaultdict(list)
    for decision in manual:
        remittance = state.remittances.get(decision.remittance_id)
        if remittance is None:
            continue
        if decision.credit_key is None:
            state.excluded.add(remittance.remittance_id)
        elif decision.credit_key in credits:
            linked[decision.credit_key].append(remittance)
    for key, chosen in linked.items():
        state.link(credits[key], chosen, "manual")


def _within(total: int, amount: int, tolerance: int) -> bool:
    return abs(total - amount) <= tolerance


def _unique_subset(
    candidates: Sequence[Remittance], amount: int, config: MatchConfig, *, min_size: int = 1
) -> tuple[list[list[Remittance]], bool]:
    """Subsets of ``candidates`` adding up to ``amount`` (at most 2 are looked for); True if the search
    ran out of budget (then the answer is not trusted)."""
    if len(candidates) > config.max_group:
        return [], True
    items = sorted(candidates, key=lambda r: -r.total_cents)
    suffix = [0] * (len(items) + 1)
    for i in range(len(items) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + items[i].total_cents
    found: list[list[Remittance]] = []
    budget = [config.search_budget]
    tol = config.amount_tolerance_cents

    def walk(i: int, total: int, chosen: list[Remittance]) -> None:
        if len(found) >= 2 or budget[0] <= 0:
            return
        budget[0] -= 1
        if len(chosen) >= min_size and _within(total, amount, tol):
            found.append(list(chosen))
            return
        if i == len(items) or total > amount + tol or total + suffix[i] < amount - tol:
            return
        chosen.append(items[i])
        walk(i + 1, total + items[i].total_cents, chosen)
        chosen.pop()
        walk(i + 1, total, chosen)

    walk(0, 0, [])
    return found, budget[0] <= 0


def _by_reference(state: _State, credits: Sequence[BankCredit], payable: Sequence[Remittance]) -> None:
    refs = [
        (r, words(r.payment_reference))
        for r in payable
        if len(normalise(r.payment_reference)) >= state.config.min_reference_length
    ]
    for credit in credits:
        if credit.key in state.used_credits:
            continue
        text = words(credit.text)
        named = [r for r, ref in refs if state.free(r.remittance_id) and ref in text]
        if not named:
            continue
        tol = state.config.amount_tolerance_cents
        if _within(sum(r.total_cents for r in named), credit.amount_cents, tol):
            state.link(credit, named, "reference")
            continue
        found, exhausted = _unique_subset(named, credit.amount_cents, state.config)
        if len(found) == 1 and not exhausted:
            state.link(credit, found[0], "reference-subset")
        else:
            state.suggestions.append(
                Suggestion(
                    credit.key,
                    tuple(r.remittance_id for r in named),
                    "référence du paiement trouvée dans le libellé, mais le montant ne correspond pas",
                )
            )


def _aliases(remittances: Iterable[Remittance], config: MatchConfig) -> dict[str, set[str]]:
    """Payer code -> whole-word forms of its code, name and configured names, as found on bank labels."""
    result: dict[str, set[str]] = defaultdict(set)
    for r in remittances:
        for alias in (r.payer, r.payer_name):
            if len(normalise(alias)) >= 3:
                result[r.payer].add(words(alias))
    for code, alias in config.payer_aliases:
        if len(normalise(alias)) >= 3:
            result[code].add(words(alias))
    return result


def _payers_of(credit: BankCredit, aliases: dict[str, set[str]]) -> set[str]:
    text = words(credit.text)
    return {payer for payer, forms in aliases.items() if any(form in text for form in forms)}


def _by_amount(
    state: _State, credits: Sequence[BankCredit], payable: Sequence[Remittance], aliases: dict[str, set[str]]
) -> None:
    config = state.config
    tol = config.amount_tolerance_cents
    for credit in credits:
        if credit.key in state.used_credits:
            continue
        payers = _payers_of(credit, aliases)
        if not payers:
            continue
        low = credit.booked_on - timedelta(days=config.credit_days_after)
        high = credit.booked_on + timedelta(days=config.credit_days_before)
        window = [r for r in payable if r.payer in payers and low <= r.paid_on <= high and state.free(r.remittance_id)]
        if not window:
            continue
        solutions: list[tuple[str, list[Remittance]]] = []
        singles = [r for r in window if _within(r.total_cents, credit.amount_cents, tol)]
        solutions += [("amount", [r]) for r in singles]
        if not solutions:
            solutions = _same_day(window, credit.amount_cents, config)
        if not solutions:
            solutions = _runs(window, credit.amount_cents, tol)
        if len(solutions) == 1:
            rule, chosen = solutions[0]
            state.link(credit, chosen, rule)
        elif solutions:
            ids = sorted({r.remittance_id for _, chosen in solutions for r in chosen})
            state.suggestions.append(
                Suggestion(credit.key, tuple(ids), f"{len(solutions)} ensembles de retours ont ce montant : à choisir")
            )


def _same_day(window: Sequence[Remittance], amount: int, config: MatchConfig) -> list[tuple[str, list[Remittance]]]:
    solutions: list[tuple[str, list[Remittance]]] = []
    days: dict[tuple[str, date], list[Remittance]] = defaultdict(list)
    for r in window:
        days[(r.payer, r.paid_on)].append(r)
    for group in days.values():
        if len(group) < 2:
            continue
        found, exhausted = _unique_subset(group, amount, config, min_size=2)
        if exhausted:
            return [("amount-same-day", f) for f in found] + [("amount-same-day", [])] * 2
        solutions += [("amount-same-day", f) for f in found]
    return solutions


def _runs(window: Sequence[Remittance], amount: int, tolerance: int) -> list[tuple[str, list[Remittance]]]:
    solutions: list[tuple[str, list[Remittance]]] = []
    by_payer: dict[str, list[Remittance]] = defaultdict(list)
    for r in window:
        by_payer[r.payer].append(r)
    for group in by_payer.values():
        days = sorted({r.paid_on for r in group})
        for i, j in itertools.combinations(range(len(days) + 1), 2):
            chosen = [r for r in group if days[i] <= r.paid_on <= days[j - 1]]
            if len({r.paid_on for r in chosen}) >= 2 and _within(sum(r.total_cents for r in chosen), amount, tolerance):
                solutions.append(("amount-run", chosen))
    return solutions


def _remittance_result(state: _State, r: Remittance, statement_end: date | None) -> RemittanceResult:
    if r.total_cents <= 0:  # rejections only, or withholdings taking all it paid: no credit to find
        return RemittanceResult(r, None)
    if r.remittance_id in state.matched:
        key, rule = state.matched[r.remittance_id]
        return RemittanceResult(r, Status.MATCHED, key, rule)
    if r.remittance_id in state.excluded:
        return RemittanceResult(r, Status.PAID_NOT_CREDITED, rule="manual")
    due = r.paid_on + timedelta(days=state.config.credit_days_after)
    covered = statement_end is not None and statement_end >= due
    return RemittanceResult(r, Status.PAID_NOT_CREDITED if covered else Status.AWAITING_CREDIT)


def _credit_result(state: _State, credit: BankCredit, aliases: dict[str, set[str]]) -> CreditResult:
    if credit.key in state.used_credits:
        ids, rule = state.used_credits[credit.key]
        return CreditResult(credit, Status.MATCHED, ids, rule)
    text = words(credit.text)
    proposed = any(s.credit_key == credit.key for s in state.suggestions)
    if proposed or _payers_of(credit, aliases) or any(words(w) in text for w in PAYER_WORDS):
        return CreditResult(credit, Status.CREDIT_UNKNOWN, action=UNKNOWN_CREDIT_ACTION)
    return CreditResult(credit, None)


def _parts(
    state: _State,
    remittances: Sequence[Remittance],
    expected: Sequence[ExpectedPart] | None,
    as_of: date,
    config: MatchConfig,
    status_of: dict[str, Status | None],
) -> tuple[tuple[PartResult, ...], tuple[RemittanceLine, ...]]:
    lines: dict[tuple[int, Part], list[tuple[Remittance, RemittanceLine]]] = defaultdict(list)
    for r in remittances:
        for line in r.lines:
            lines[(line.claim_number, line.part)].append((r, line))
    unknown: list[RemittanceLine] = []
    if expected is None:
        expected = [_inferred(key, found) for key, found in sorted(lines.items(), key=lambda kv: (kv[0][0], kv[0][1]))]
        known_keys = set(lines)
    else:
        known_keys = {(e.claim_number, e.part) for e in expected}
        for key, found in sorted(lines.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if key not in known_keys:
                unknown.extend(line for _, line in found)
    results = [_part(state, e, lines.get((e.claim_number, e.part), []), as_of, config, status_of) for e in expected]
    return tuple(sorted(results, key=lambda p: (p.claim_number, p.part))), tuple(unknown)


def _inferred(key: tuple[int, Part], found: Sequence[tuple[Remittance, RemittanceLine]]) -> ExpectedPart:
    """Without the claim list, what was billed is what the remittances say (billed amount, else paid)."""
    billed = [line.billed_cents for _, line in found if line.billed_cents is not None]
    amount = max(billed) if billed else sum(line.paid_cents for _, line in found)
    first = min(r.paid_on for r, _ in found)
    return ExpectedPart(key[0], key[1], amount, first, found[0][1].batch_number, found[0][1].payer_code)


def _part(
    state: _State,
    e: ExpectedPart,
    found: Sequence[tuple[Remittance, RemittanceLine]],
    as_of: date,
    config: MatchConfig,
    status_of: dict[str, Status | None],
) -> PartResult:
    tol = config.amount_tolerance_cents
    remitted = sum(line.paid_cents for _, line in found)
    paying = [(r, line) for r, line in found if line.paid_cents > 0]
    # A payment whose withholdings take all it paid settles its parts without a transfer.
    settled = [(r, line) for r, line in paying if r.remittance_id in state.matched or r.total_cents <= 0]
    credited = sum(line.paid_cents for _, line in settled)
    base = PartResult(
        claim_number=e.claim_number,
        part=e.part,
        status=Status.PENDING,
        expected_cents=e.expected_cents,
        remitted_cents=remitted,
        credited_cents=credited,
        billed_on=e.billed_on,
        payer=e.payer or next((line.payer_code for _, line in found if line.payer_code), ""),
        batch_number=e.batch_number,
        remittance_ids=tuple(sorted({r.remittance_id for r, _ in found})),
        credit_keys=tuple(
            sorted({state.matched[r.remittance_id][0] for r, _ in paying if r.remittance_id in state.matched})
        ),
    )
    explained = [line for _, line in found if line.status is not LineStatus.PAID and (line.reason or line.action)]
    if e.rejected_reason:
        return replace(base, status=Status.REJECTED, reason=e.rejected_reason, action=e.rejected_action)
    if found and remitted == 0:
        last = explained[-1] if explained else found[-1][1]
        return replace(base, status=Status.REJECTED, reason=last.reason, action=last.action)
    if not found:
        if (as_of - e.billed_on).days > config.unpaid_after(e.part):
            return replace(base, status=Status.UNPAID_OVERDUE, action=OVERDUE_ACTION)
        return base
    if remitted < e.expected_cents - tol:
        why = explained[-1] if explained else None
        return replace(
            base,
            status=Status.PARTIAL,
            reason=why.reason if why else f"payé {remitted / 100:.2f} € sur {e.expected_cents / 100:.2f} €",
            action=why.action if why else PARTIAL_ACTION,
        )
    statuses = {status_of.get(r.remittance_id) for r, _ in paying} - {None}
    if statuses <= {Status.MATCHED}:
        return replace(base, status=Status.MATCHED)
    if Status.PAID_NOT_CREDITED in statuses:
        return replace(base, status=Status.PAID_NOT_CREDITED, action=NOT_CREDITED_ACTION)
    return replace(base, status=Status.AWAITING_CREDIT)
