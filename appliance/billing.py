"""Who pays what for a dispensation: AMO, AMC (mutuelle) and the patient, in integer cents.

Rules kept here (simplified from the French tariff rules, enough for the counter's display and the
claim; the back office reconciles the payers' actual remittances):
- each line's price is the product's public price times the quantity dispensed;
- AMO pays the product's rate (65, 30, 15 or 100 %); a line linked to the patient's ALD is paid at
  100 %; a product that is not reimbursable (rate 0) is paid by nobody but the patient;
- the AMC pays its coverage share of what the AMO leaves on reimbursable lines, when its rights
  cover the day; a C2S beneficiary has the whole remainder covered (C2S is the complementary);
- tiers payant: the patient advances nothing for a payer whose rights are known and valid; without
  valid AMO rights (degraded mode with no card data) the patient advances the AMO share too.
Rounding is half up, per line, so the shares of a line always add up to its price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from appliance.domain import AmcRights, AmoRights, Product


@dataclass(frozen=True, slots=True)
class BilledLine:
    cip13: str
    name: str
    quantity: int
    unit_price_cents: int
    rate_pct: int
    total_cents: int
    amo_cents: int
    amc_cents: int
    patient_cents: int


@dataclass(frozen=True, slots=True)
class Bill:
    lines: tuple[BilledLine, ...]
    amo_tiers_payant: bool
    amc_tiers_payant: bool

    @property
    def total_cents(self) -> int:
        return sum(line.total_cents for line in self.lines)

    @property
    def amo_cents(self) -> int:
        return sum(line.amo_cents for line in self.lines)

    @property
    def amc_cents(self) -> int:
        return sum(line.amc_cents for line in self.lines)

    @property
    def patient_share_cents(self) -> int:
        return sum(line.patient_cents for line in self.lines)

    @property
    def to_pay_cents(self) -> int:
        """What the patient pays at the counter: their share plus what no payer takes in tiers payant."""
        due = self.patient_share_cents
        if not self.amo_tiers_payant:
            due += self.amo_cents
        if not self.amc_tiers_payant:
            due += self.amc_cents
        return due


@dataclass(frozen=True, slots=True)
class BillItem:
    product: Product
    quantity: int
    ald: bool = False


def _share(amount: int, pct: int) -> int:
    """``amount × pct / 100`` rounded half up, in integers."""
    return (amount * pct + 50) // 100


def amo_rate(product: Product, *, ald_line: bool, amo: AmoRights | None) -> int:
    if product.rate_pct == 0:
        return 0
    if ald_line and amo is not None and amo.ald:
        return 100
    return product.rate_pct


def compute_bill(items: Sequence[BillItem], *, amo: AmoRights | None, amc: AmcRights | None, day: date) -> Bill:
    """Split every item between AMO, AMC and patient."""
    amo_valid = amo is not None and amo.covers(day)
    c2s = amo_valid and amo is not None and amo.c2s
    amc_valid = amc is not None and amc.covers(day) and amc.accreditation is not None
    lines = []
    for item in items:
        if item.quantity <= 0:
            raise ValueError("a billed line needs a positive quantity")
        total = item.product.price_cents * item.quantity
        rate = amo_rate(item.product, ald_line=item.ald, amo=amo)
        amo_part = _share(total, rate)
        remainder = total - amo_part
        amc_part = 0
        if rate > 0 and remainder > 0:
            if c2s:
                amc_part = remainder
            elif amc_valid and amc is not None:
                amc_part = min(remainder, _share(remainder, amc.coverage_pct))
        lines.append(
            BilledLine(
                cip13=item.product.cip13,
                name=item.product.name,
                quantity=item.quantity,
                unit_price_cents=item.product.price_cents,
                rate_pct=rate,
                total_cents=total,
                amo_cents=amo_part,
                amc_cents=amc_part,
                patient_cents=total - amo_part - amc_part,
            )
        )
    return Bill(tuple(lines), amo_tiers_payant=amo_valid, amc_tiers_payant=c2s or amc_valid)
