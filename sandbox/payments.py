"""Months of a pharmacy's claims, payers' remittances and bank statement, with realistic noise.

:func:`generate` plays a seeded activity: claims every working day in one batch a day, paid by two
compulsory funds and three mutuelles (one of them pays weeks late, and its transfers take days to
reach the bank), with rejections (with a code), partial payments (the payer's price table out of
date; the complement often comes weeks later), claims never paid, remittances of one payment day
grouped in one transfer (and a weekly payer grouping a whole week), payment references cut off or
missing on the bank labels, a transfer that never arrives, payer credits no remittance explains,
card takings, patients' transfers and debits, and now and then a debt withheld on a payment (a NOEMIE
250 *retenue*: the transfer is what was paid less the withholding). :func:`write_files` writes the
remittances as NOEMIE PS files (the published layout, :mod:`appliance.payments.noemie`), the camt.053
XML and the CFONB 120 statement of the very same movements;
:func:`seed_database` puts the claims in a counter database. The ground truth comes with it, for
the tests and ``bench/reconcile.py``.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from appliance.payments.model import REJECTION_CODES, ExpectedPart, Part
from appliance.payments.noemie import format_entity, write_noemie
from appliance.store.database import transaction

if TYPE_CHECKING:
    import sqlite_utils

FINESS = "750000001"
PHARMACY = "PHARMACIE DU SANDBOX"
IBAN = "FR7630001007941234567890185"
ACCOUNT = "12345678901"


@dataclass(frozen=True, slots=True)
class Payer:
    code: str
    name: str
    kind: Part
    delay: tuple[int, int]
    """Days from the batch to the payment date."""
    lag: tuple[int, int]
    """Days from the payment date to the booking on the pharmacy's account."""
    weekly: bool = False
    """Pays a whole week's remittances in one Friday transfer."""


PAYERS: tuple[Payer, ...] = (
    Payer("CPAM751", "CPAM DE PARIS", Part.AMO, (2, 5), (1, 2)),
    Payer("MSA075", "MSA ILE DE FRANCE", Part.AMO, (3, 6), (1, 3), weekly=True),
    Payer("88888888", "HARMONIE MUTUELLE", Part.AMC, (5, 12), (1, 3)),
    Payer("77553311", "MGEN", Part.AMC, (4, 10), (1, 2)),
    Payer("99001122", "MUTUELLE TARDIVE", Part.AMC, (40, 80), (3, 8)),
)
"""The payers; the last one is the late payer."""
LATE_PAYER = "99001122"


@dataclass(slots=True)
class Claim:
    number: int
    batch: int
    day: date
    amo_payer: str
    amo_cents: int
    amc_payer: str | None
    amc_cents: int


@dataclass(slots=True)
class Line:
    claim: int
    part: Part
    payer_code: str
    billed: int
    paid: int
    code: str = ""
    day: date | None = None
    """The day the claim was billed."""


@dataclass(slots=True)
class Withholding:
    """A debt the payer recovers on a payment (NOEMIE 250): ``amount`` cents less on the transfer."""

    reference: str
    amount: int
    recorded_on: date
    nature: str = "IND"
    """Nature de la dette (IND: indu sur prestations)."""
    operation: str = "RPR"
    """Nature de l'opération de récupération (RPR: retenue sur prestation)."""


@dataclass(slots=True)
class Return:
    """One payer's return for one batch: a payment (071, with a reference) or rejections only (070)."""

    payer: Payer
    batch: int
    paid_on: date
    reference: str
    lines: list[Line]
    withholdings: list[Withholding] = field(default_factory=list)
    lot: str = ""
    """A batch number that is no NOEMIE lot number (not 1-999): written in the invoices' lot zone only."""

    @property
    def remittance_id(self) -> str:
        return f"{self.payer.code}:{self.reference}"

    @property
    def total(self) -> int:
        """What the payer transfers: the parts paid less the withholdings."""
        return sum(line.paid for line in self.lines) - sum(w.amount for w in self.withholdings)


@dataclass(slots=True)
class Movement:
    booked_on: date
    amount: int
    """Cents, negative for a debit."""
    label: str
    debtor: str
    information: str
    reference: str
    """The bank's own entry reference (7 characters): the credit's identity in both formats."""


@dataclass(slots=True)
class Activity:
    start: date
    end: date
    claims: list[Claim]
    returns: list[Return]
    movements: list[Movement]
    truth: dict[str, str | None] = field(default_factory=dict)
    """Remittance id -> bank reference of the credit that paid it (None: never credited)."""
    outcome: dict[tuple[int, Part], str] = field(default_factory=dict)
    """(claim, part) -> "paid", "partial", "rejected", "unpaid" or "not-credited" as generated."""
    unexplained: set[str] = field(default_factory=set)
    """Bank references of payer credits that no remittance explains."""

    def expected(self) -> list[ExpectedPart]:
        parts = []
        for c in self.claims:
            parts.append(ExpectedPart(c.number, Part.AMO, c.amo_cents, c.day, str(c.batch)))
            if c.amc_payer is not None:
                parts.append(ExpectedPart(c.number, Part.AMC, c.amc_cents, c.day, str(c.batch), c.amc_payer))
        return parts


def _working_days(start: date, end: date) -> list[date]:
    return [start + timedelta(n) for n in range((end - start).days + 1) if (start + timedelta(n)).weekday() < 5]


def generate(*, months: int = 3, claims_per_day: int = 30, seed: int = 1, start: date = date(2026, 1, 5)) -> Activity:
    """A seeded activity of ``months`` months (same arguments, same activity)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible test activity, not a secret
    end = start + timedelta(days=30 * months)
    payers = {p.code: p for p in PAYERS}
    claims: list[Claim] = []
    for batch, day in enumerate(_working_days(start, end - timedelta(days=1)), start=1):
        for _ in range(max(1, int(rng.gauss(claims_per_day, claims_per_day / 5)))):
            amo = "CPAM751" if rng.random() < 0.82 else "MSA075"
            amc = rng.choices(["88888888", "77553311", LATE_PAYER, None], weights=[25, 20, 12, 43])[0]
            claims.append(
                Claim(
                    number=len(claims) + 1,
                    batch=batch,
                    day=day,
                    amo_payer=amo,
                    amo_cents=rng.randint(150, 9000) if rng.random() < 0.9 else rng.randint(9000, 60000),
                    amc_payer=amc,
                    amc_cents=rng.randint(40, 3500) if amc else 0,
                )
            )
    activity = Activity(start, end, claims, [], [])
    references = iter(range(1, 10**6))
    by_payer_batch: dict[tuple[str, int], list[Claim]] = defaultdict(list)
    for c in claims:
        by_payer_batch[(c.amo_payer, c.batch)].append(c)
        if c.amc_payer:
            by_payer_batch[(c.amc_payer, c.batch)].append(c)
    complements: dict[tuple[str, date], list[Line]] = defaultdict(list)
    for (code, batch), its_claims in sorted(by_payer_batch.items()):
        payer = payers[code]
        day = its_claims[0].day
        paid_on = _next_working(day + timedelta(days=rng.randint(*payer.delay)))
        paid: list[Line] = []
        rejected: list[Line] = []
        for c in its_claims:
            part = payer.kind
            amount = c.amo_cents if part is Part.AMO else c.amc_cents
            roll = rng.random()
            if roll < 0.02:
                activity.outcome[(c.number, part)] = "unpaid"
                continue
            if roll < 0.05:
                code_choices = ["DROI", "PRES", "PIEC"] + (["ADHE"] if part is Part.AMC else [])
                rejected.append(Line(c.number, part, code, amount, 0, rng.choice(code_choices), c.day))
                activity.outcome[(c.number, part)] = "rejected"
                continue
            if roll < 0.09 and amount >= 200:
                first = amount * rng.randint(80, 95) // 100
                paid.append(Line(c.number, part, code, amount, first, "TARI", c.day))
                activity.outcome[(c.number, part)] = "partial"
                later = _next_working(paid_on + timedelta(days=rng.randint(15, 40)))
                if rng.random() < 0.7 and later < end:
                    rest = amount - first
                    complements[(code, later)].append(Line(c.number, part, code, rest, rest, "", c.day))
                    activity.outcome[(c.number, part)] = "paid"
                continue
            paid.append(Line(c.number, part, code, amount, amount, "", c.day))
            activity.outcome[(c.number, part)] = "paid"
        if paid:
            activity.returns.append(Return(payer, batch, paid_on, f"P{paid_on:%y%m%d}{next(references):06d}", paid))
        if rejected:
            activity.returns.append(Return(payer, batch, paid_on, "", rejected))
    for (code, paid_on), lines in sorted(complements.items()):
        payer = payers[code]
        activity.returns.append(Return(payer, 0, paid_on, f"C{paid_on:%y%m%d}{next(references):06d}", lines))
    for r in activity.returns:
        if r.paid_on >= end:  # not paid yet when the statement ends
            for line in r.lines:
                activity.outcome[(line.claim, line.part)] = "unpaid"
    activity.returns = [r for r in activity.returns if r.paid_on < end]
    _withhold(activity, seed)
    _bank(activity, rng)
    return activity


def _withhold(activity: Activity, seed: int) -> None:
    """A debt withheld on about 3 % of the payments (its own random stream: the rest of the activity is
    the one the seed always gave)."""
    rng = random.Random(f"withholdings-{seed}")  # noqa: S311 - a reproducible test activity
    numbers = iter(range(1, 10**6))
    for r in activity.returns:
        if r.reference and r.total > 600 and rng.random() < 0.03:
            amount = rng.randint(100, min(r.total - 300, 6000))
            recorded = r.paid_on - timedelta(days=rng.randint(20, 200))
            r.withholdings.append(Withholding(f"D{r.paid_on:%y}{next(numbers):07d}", amount, recorded))


def _next_working(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _bank(activity: Activity, rng: random.Random) -> None:
    """The transfers the payers make for their remittances, and everything else on the account."""
    refs = iter(range(1, 10**6))

    def bank_ref() -> str:
        return f"E{next(refs):06d}"

    paying = [r for r in activity.returns if r.reference and r.total > 0]
    groups: dict[tuple[str, date], list[Return]] = defaultdict(list)
    for r in paying:
        if r.payer.weekly:
            friday = r.paid_on + timedelta(days=4 - r.paid_on.weekday())
            groups[(r.payer.code, friday)].append(r)
        elif rng.random() < 0.7:
            groups[(r.payer.code, r.paid_on)].append(r)  # one transfer for the payment day
        else:
            groups[(r.payer.code + "/" + r.reference, r.paid_on)].append(r)
    early = sorted(k for k in groups if k[1] + timedelta(days=15) < activity.end)  # seen missing by the end
    lost = set(rng.sample(early, k=min(2, len(early))))
    for key, its in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        payer = its[0].payer
        booked = _next_working(key[1] + timedelta(days=rng.randint(*payer.lag)))
        if key in lost or booked >= activity.end:
            for r in its:
                activity.truth[r.remittance_id] = None
                for line in r.lines:
                    if activity.outcome.get((line.claim, line.part)) == "paid":
                        activity.outcome[(line.claim, line.part)] = "not-credited" if key in lost else "awaiting"
            continue
        ref = bank_ref()
        noise = rng.random()
        references = " ".join(r.reference for r in its)
        if noise < 0.12:
            information = "PAIEMENT TIERS PAYANT"  # the reference is missing
        elif noise < 0.2:
            information = " ".join(f"{r.reference[:4]} {r.reference[4:]}" for r in its)  # mangled
        else:
            information = f"RSP {references}"
        activity.movements.append(
            Movement(booked, sum(r.total for r in its), f"VIR SEPA {payer.name}", payer.name, information, ref)
        )
        for r in its:
            activity.truth[r.remittance_id] = ref
    for day in _working_days(activity.start, activity.end - timedelta(days=1)):
        activity.movements.append(
            Movement(day, rng.randint(20000, 250000), f"REMISE CB {day:%d%m}", "", "TELECOLLECTE CB", bank_ref())
        )
        if rng.random() < 0.15:
            activity.movements.append(
                Movement(day, rng.randint(500, 8000), "VIR SEPA M OU MME PATIENT", "PATIENT", "REGLEMENT", bank_ref())
            )
        if rng.random() < 0.4:
            activity.movements.append(
                Movement(day, -rng.randint(50000, 900000), "PRLV SEPA GROSSISTE", "", "FACTURE", bank_ref())
            )
    for _ in range(2):  # payer credits nothing explains (a regularisation, a missing return file)
        day = _next_working(activity.start + timedelta(days=rng.randint(10, 80)))
        if day < activity.end:
            ref = bank_ref()
            activity.unexplained.add(ref)
            activity.movements.append(
                Movement(
                    day, rng.randint(1000, 90000), "VIR SEPA CPAM DE PARIS", "CPAM DE PARIS", "REGULARISATION", ref
                )
            )
    activity.movements.sort(key=lambda m: (m.booked_on, m.reference))


# ---------------------------------------------------------------------------------------------- writers


def _emitter(payer: Payer) -> tuple[str, int]:
    """Type d'émetteur (CP a CPAM, MA the MSA, OC an AMC) and its number (the digits of the code)."""
    kind = "OC" if payer.kind is Part.AMC else "MA" if payer.code.startswith("MSA") else "CP"
    return kind, int("".join(c for c in payer.code if c.isdigit()) or "0")


def _header(emitter_type: str, emitter: int, created_on: date, file_number: int) -> dict[str, object]:
    return {
        "emitter_type": emitter_type,
        "emitter": emitter,
        "recipient_type": "TP",
        "recipient": FINESS,
        "file_id": f"{file_number:06d}",
        "created_on": created_on,
        "norm": "576",
        "currency": "U",
        "flow": "T",
        "record_length": 128,
    }


def _control(count: int, cents: int) -> str:
    return format_entity("990", count=count, total=abs(cents), sign="N" if cents < 0 else "P")


def noemie_file(payer: Payer, returns: list[Return], created_on: date, file_number: int, *, newline: str = "") -> str:
    """One NOEMIE PS file (published layout: 128-byte records, not separated unless ``newline``) of
    ``returns``, all of one payer: a 071 per payment (070 for rejections only), an 081 of claims (04 for
    the complements of earlier partial payments) with its 080 lot, an 081 of withholdings (05), and a
    990 closing every level (lot, return type, payment, payee)."""
    emitter_type, emitter = _emitter(payer)
    entities = [format_entity("040", number=int(FINESS))]
    file_total = lots = 0
    for r in returns:
        if r.reference:
            entities.append(
                format_entity("071", day=r.paid_on, label1=r.reference, label2=payer.name[:32], payer=payer.code)
            )
        else:
            entities.append(format_entity("070", day=r.paid_on))
        paid = sum(line.paid for line in r.lines)
        returns_types = 0
        if r.lines:
            returns_types += 1
            entities.append(format_entity("081", return_type="01" if r.batch else "04"))
            invoices = [entity for line in r.lines for entity in _invoice(line, r.batch, payer, r.lot)]
            if r.batch:
                lots += 1
                batch_day = min(line.day or r.paid_on for line in r.lines)
                entities.append(format_entity("080", day=batch_day, batch=r.batch))
                entities += invoices
                entities.append(_control(len(r.lines), paid))
                entities.append(_control(1, paid))
            else:
                entities += invoices
                entities.append(_control(len(r.lines), paid))
        if r.withholdings:
            returns_types += 1
            entities.append(format_entity("081", return_type="05"))
            for n, w in enumerate(r.withholdings, start=1):
                entities.append(
                    format_entity(
                        "250",
                        line=n,
                        debt=w.reference,
                        recorded_on=w.recorded_on,
                        nature=w.nature,
                        operation=w.operation,
                        amount=w.amount,
                        sign="N",
                        balance=0,
                    )
                )
            entities.append(_control(len(r.withholdings), -sum(w.amount for w in r.withholdings)))
        entities.append(_control(returns_types, r.total))
        file_total += r.total
    entities.append(_control(len(returns), file_total))
    header = _header(emitter_type, emitter, created_on, file_number)
    return write_noemie(header, entities, lots=lots, total_cents=file_total, newline=newline)


def _invoice(line: Line, batch: int, payer: Payer, lot: str = "") -> list[str]:
    """A 102 invoice with its beneficiary (103, placeholder identity), its part (198 or 199), its acts
    (210) and its rejection (294)."""
    day = line.day or date(2026, 1, 1)
    state = "R" if line.code and line.paid == 0 else "P"
    part: dict[str, object] = {"asked": line.billed, "state": state, "paid": line.paid, "sign": "P"}
    out = [
        format_entity(
            "102",
            invoice=f"{line.claim:09d}",
            batch=f"{batch:03d}" if batch else lot[:3],
            batch_day=day if batch else None,
            invoice_type="F" if batch else "E",
            billed_on=day,
        ),
        format_entity("103", nir=f"1{line.claim:012d}"[-13:], nir_key=0, birth_date="800101", birth_rank=1),
    ]
    if line.part is Part.AMO:
        out.append(format_entity("198", **part))
    else:
        out.append(format_entity("199", **part, amc=_emitter(payer)[1]))
    out += _acts(line, day)
    if line.code:
        label = REJECTION_CODES[line.code].reason[:86]
        part_code = "O" if line.part is Part.AMO else "C"
        out.append(format_entity("294", code=line.code, label=label, reject_level="F", part=part_code))
    return out


def _acts(line: Line, day: date) -> list[str]:
    """Two acts (210) when the amount allows: the medicines and the dispensing fee."""
    if line.billed < 200:
        return [_act(1, "PH7", line.billed, line.paid, line.part, day)]
    fee_billed = 102
    fee_paid = min(fee_billed, line.paid)
    return [
        _act(1, "PH7", line.billed - fee_billed, line.paid - fee_paid, line.part, day),
        _act(2, "HON", fee_billed, fee_paid, line.part, day),
    ]


def _act(n: int, nature: str, billed: int, paid: int, part: Part, day: date) -> str:
    amo = paid if part is Part.AMO else 0
    amc = paid if part is Part.AMC else 0
    return format_entity(
        "210",
        line=n,
        regime_code=0,
        exemption="0",
        mode=0,
        discipline=0,
        prescribed_on=day,
        care_from=day,
        care_to=day,
        unit_price=billed,
        base=billed,
        rate=100,
        reimbursed=amo,
        sign="P",
        nature=nature,
        complement="",
        quantity=1,
        coefficient=100,
        count=1,
        expense=billed,
        expense_kind="",
        am_rate=0,
        am_amount=0,
        amc_rate=100 if amc else 0,
        amc_amount=amc,
        amc_base=billed if amc else 0,
    )


def noemie_files(remittances: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The sandbox server's remittances (its ``GET /claims/remittances`` items) as NOEMIE PS files, one
    per payer and payment day: ``{"name", "payer", "paid_on", "content"}`` (content: the file's
    characters, one per byte)."""
    by_file: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in remittances:
        by_file[(str(r["payer"]), str(r["paid_on"]))].append(r)
    files = []
    codes = {advice.reason: code for code, advice in REJECTION_CODES.items()}
    for (payer_code, day_text), its in sorted(by_file.items()):
        day = date.fromisoformat(day_text)
        kind = Part.AMO if payer_code == "AMO" else Part.AMC
        payer = Payer(payer_code, payer_code, kind, (0, 0), (0, 0))
        returns = []
        for r in its:
            batch_text = str(r.get("batch_number") or "")
            batch = int(batch_text) if batch_text.isdigit() and 0 < int(batch_text) < 1000 else 0
            lines = []
            for c in r["claims"]:
                rejected = c["status"] == "rejected"
                code = codes.get(str(c.get("reason") or ""), "REJE") if rejected else ""
                paid = int(c["paid_cents"])
                lines.append(Line(int(c["claim_number"]), kind, payer_code, paid, paid, code, day))
            lot = "" if batch else batch_text
            returns.append(Return(payer, batch, day, str(r["payment_reference"]), lines, lot=lot))
        number = int("".join(ch for ch in str(its[0]["remittance_id"]) if ch.isdigit()) or "1") % 10**6
        files.append(
            {
                "name": f"{day:%Y%m%d}-{payer_code}.rsp",
                "payer": payer_code,
                "paid_on": day_text,
                "content": noemie_file(payer, returns, day, number),
            }
        )
    return files


def camt053(activity: Activity) -> str:
    """The statement as ISO 20022 camt.053.001.02 (one Ntry per movement)."""
    opening = 1_000_000
    closing = opening + sum(m.amount for m in activity.movements)
    last = activity.end - timedelta(days=1)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">',
        "<BkToCstmrStmt>",
        f"<GrpHdr><MsgId>STMT{activity.start:%Y%m%d}</MsgId><CreDtTm>{last}T23:00:00</CreDtTm></GrpHdr>",
        f"<Stmt><Id>S{activity.start:%Y%m%d}</Id>",
        f"<CreDtTm>{last}T23:00:00</CreDtTm>",
        f"<FrToDt><FrDtTm>{activity.start}T00:00:00</FrDtTm><ToDtTm>{last}T23:59:59</ToDtTm></FrToDt>",
        f"<Acct><Id><IBAN>{IBAN}</IBAN></Id><Ccy>EUR</Ccy></Acct>",
        _balance("OPBD", opening, activity.start),
        _balance("CLBD", closing, last),
    ]
    for m in activity.movements:
        direction = "CRDT" if m.amount > 0 else "DBIT"
        party = "Dbtr" if m.amount > 0 else "Cdtr"
        out.append(
            f'<Ntry><Amt Ccy="EUR">{abs(m.amount) / 100:.2f}</Amt><CdtDbtInd>{direction}</CdtDbtInd>'
            f"<Sts>BOOK</Sts><BookgDt><Dt>{m.booked_on}</Dt></BookgDt><ValDt><Dt>{m.booked_on}</Dt></ValDt>"
            f"<AcctSvcrRef>{m.reference}</AcctSvcrRef>"
            "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
            f"<AddtlNtryInf>{escape(m.label)}</AddtlNtryInf>"
            f"<NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>"
            f"<RltdPties><{party}><Nm>{escape(m.debtor or 'INCONNU')}</Nm></{party}></RltdPties>"
            f"<RmtInf><Ustrd>{escape(m.information)}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"
        )
    out += ["</Stmt>", "</BkToCstmrStmt>", "</Document>"]
    return "\n".join(out) + "\n"


def _balance(code: str, cents: int, day: date) -> str:
    direction = "CRDT" if cents >= 0 else "DBIT"
    return (
        f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">{abs(cents) / 100:.2f}</Amt>'
        f"<CdtDbtInd>{direction}</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"
    )


def cfonb_amount(cents: int) -> str:
    """13 digits + the last digit coded with the sign ('{' A-I credit, '}' J-R debit), 2 decimals."""
    digits = f"{abs(cents):014d}"
    last = ("{ABCDEFGHI" if cents >= 0 else "}JKLMNOPQR")[int(digits[-1])]
    return digits[:13] + last


def _cfonb_head(code: str, op: str = "    ") -> str:
    return f"{code}30004{op}00012EUR2 {ACCOUNT}"


def cfonb120(activity: Activity) -> str:
    """The statement as CFONB 120: 01 old balance, 04 + 05 (debtor NPY, remittance LCC) per movement, 07."""
    opening = 1_000_000
    lines = [(_cfonb_head("01") + f"  {activity.start:%d%m%y}" + " " * 50 + cfonb_amount(opening)).ljust(120)]
    for m in activity.movements:
        d = f"{m.booked_on:%d%m%y}"
        op = "05" if m.amount > 0 else "01"
        record = (
            _cfonb_head("04", "0158")
            + f"{op}{d}  {d}{m.label[:31]:<31}  {m.reference[:7]:<7}  {cfonb_amount(m.amount)}{'':16}"
        )
        lines.append(record)
        for qualifier, info in (("NPY", m.debtor), ("LCC", m.information)):
            if info:
                lines.append((_cfonb_head("05", "0158") + f"{op}{d}     {qualifier}{info[:70]:<70}  ").ljust(120))
    closing = opening + sum(m.amount for m in activity.movements)
    last = activity.end - timedelta(days=1)
    lines.append((_cfonb_head("07") + f"  {last:%d%m%y}" + " " * 50 + cfonb_amount(closing)).ljust(120))
    for n, line in enumerate(lines, start=1):
        if len(line) != 120:
            raise AssertionError(f"CFONB record {n} is {len(line)} characters: {line!r}")
    return "\r\n".join(lines) + "\r\n"


def write_files(activity: Activity, directory: Path) -> tuple[Path, Path, Path]:
    """``remittances/`` (one NOEMIE PS file per payer and payment day), ``bank.xml`` and ``bank.cfonb``."""
    remittances = directory / "remittances"
    remittances.mkdir(parents=True, exist_ok=True)
    by_file: dict[tuple[str, date], list[Return]] = defaultdict(list)
    for r in activity.returns:
        by_file[(r.payer.code, r.paid_on)].append(r)
    for number, ((code, day), its) in enumerate(sorted(by_file.items(), key=lambda kv: (kv[0][1], kv[0][0])), 1):
        text = noemie_file(its[0].payer, its, day, number)
        (remittances / f"{day:%Y%m%d}-{code}.rsp").write_bytes(text.encode("iso-8859-1"))
    camt = directory / "bank.xml"
    camt.write_text(camt053(activity), encoding="utf-8")
    cfonb = directory / "bank.cfonb"
    cfonb.write_text(cfonb120(activity), encoding="cp1252", newline="")
    return remittances, camt, cfonb


def seed_database(db: sqlite_utils.Database, activity: Activity) -> None:
    """The claims (with their batches, a patient per mutuelle and the dispensations they need) in a
    counter database with the real schema. Identity fields hold placeholder bytes: nothing here is read
    as a patient."""
    now = time.time()
    with transaction(db) as conn:
        conn.execute(
            "INSERT INTO operators(name, role, pin_hash, created_at) VALUES ('seed', 'titulaire', 'x', ?)", (now,)
        )
        operator = int(conn.execute("SELECT id FROM operators WHERE name = 'seed'").fetchone()[0])
        patients: dict[str | None, int] = {}
        for amc in [None, *(p.code for p in PAYERS if p.kind is Part.AMC)]:
            cursor = conn.execute(
                "INSERT INTO patients(birth_name, first_names, sex, birth_date, status, created_at, updated_at)"
                " VALUES (x'00', x'00', x'00', x'00', 'QUAL', ?, ?)",
                (now, now),
            )
            patients[amc] = int(cursor.lastrowid or 0)
            if amc:
                conn.execute(
                    "INSERT INTO amc_rights(patient_id, amc_number, member_number, valid_from, valid_to, coverage_pct,"
                    " at) VALUES (?, ?, x'00', '2020-01-01', '2030-12-31', 100, ?)",
                    (patients[amc], amc, now),
                )
        batches: dict[int, int] = {}
        for c in activity.claims:
            epoch = datetime(c.day.year, c.day.month, c.day.day, 12).timestamp()
            if c.batch not in batches:
                cursor = conn.execute(
                    "INSERT INTO batches(number, status, opened_at, closed_at) VALUES (?, 'accepted', ?, ?)",
                    (c.batch, epoch, epoch),
                )
                batches[c.batch] = int(cursor.lastrowid or 0)
            patient = patients[c.amc_payer]
            cursor = conn.execute(
                "INSERT INTO dispensations(patient_id, operator_id, at) VALUES (?, ?, ?)", (patient, operator, epoch)
            )
            total = c.amo_cents + c.amc_cents + 100
            conn.execute(
                "INSERT INTO claims(number, batch_id, dispensation_id, patient_id, total_cents, amo_cents, amc_cents,"
                " patient_cents, to_pay_cents, amo_tiers_payant, amc_tiers_payant, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 100, 100, 1, ?, 'accepted', ?)",
                (
                    c.number,
                    batches[c.batch],
                    int(cursor.lastrowid or 0),
                    patient,
                    total,
                    c.amo_cents,
                    c.amc_cents,
                    int(c.amc_payer is not None),
                    epoch,
                ),
            )
