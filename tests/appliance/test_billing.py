"""Who pays what: AMO rate by product, ALD and C2S cases, the mutuelle's share, tiers payant."""

from datetime import date

import pytest

from appliance.billing import BillItem, compute_bill
from appliance.domain import AmcRights, AmoRights, Product

DAY = date(2026, 6, 15)
AMO = AmoRights("282087505612339", "01", "751", date(2025, 1, 1), date(2029, 12, 31))
AMC = AmcRights("77777777", "MA1", date(2026, 1, 1), date(2027, 12, 31), coverage_pct=100, accreditation="ACC1")


def product(rate: int, price: int = 1000) -> Product:
    return Product(cip13="3400930000120", name=f"produit {rate}", price_cents=price, rate_pct=rate)


@pytest.mark.parametrize(("rate", "amo_cents"), [(65, 650), (30, 300), (15, 150), (100, 1000), (0, 0)])
def test_the_amo_pays_the_product_rate(rate: int, amo_cents: int) -> None:
    bill = compute_bill([BillItem(product(rate), 1)], amo=AMO, amc=None, day=DAY)
    assert bill.amo_cents == amo_cents
    assert bill.patient_share_cents == 1000 - amo_cents
    assert bill.to_pay_cents == 1000 - amo_cents


def test_a_mutuelle_at_100_percent_leaves_nothing_to_pay_on_reimbursable_products() -> None:
    bill = compute_bill([BillItem(product(65), 2), BillItem(product(30, 333), 1)], amo=AMO, amc=AMC, day=DAY)
    assert bill.total_cents == 2333
    assert bill.amo_cents == 1300 + 100
    assert bill.amc_cents == 700 + 233
    assert bill.to_pay_cents == 0


def test_a_partial_mutuelle_pays_its_share_of_the_remainder_rounded_half_up() -> None:
    amc = AmcRights("44444444", "PT", date(2026, 1, 1), date(2027, 12, 31), coverage_pct=80, accreditation="A")
    bill = compute_bill([BillItem(product(65, 1005), 1)], amo=AMO, amc=amc, day=DAY)
    line = bill.lines[0]
    assert (line.amo_cents, line.amc_cents, line.patient_cents) == (653, 282, 70)
    assert line.amo_cents + line.amc_cents + line.patient_cents == line.total_cents


def test_the_mutuelle_pays_nothing_for_a_product_that_is_not_reimbursable() -> None:
    bill = compute_bill([BillItem(product(0), 1)], amo=AMO, amc=AMC, day=DAY)
    assert (bill.amo_cents, bill.amc_cents, bill.to_pay_cents) == (0, 0, 1000)


def test_an_ald_line_is_paid_at_100_percent_only_for_an_ald_patient() -> None:
    ald = AmoRights(AMO.nir, "01", "751", AMO.valid_from, AMO.valid_to, ald=True)
    assert compute_bill([BillItem(product(65), 1, ald=True)], amo=ald, amc=None, day=DAY).to_pay_cents == 0
    assert compute_bill([BillItem(product(65), 1, ald=False)], amo=ald, amc=None, day=DAY).to_pay_cents == 350
    assert compute_bill([BillItem(product(65), 1, ald=True)], amo=AMO, amc=None, day=DAY).to_pay_cents == 350


def test_c2s_covers_the_whole_remainder_without_a_mutuelle() -> None:
    c2s = AmoRights(AMO.nir, "01", "751", AMO.valid_from, AMO.valid_to, c2s=True)
    bill = compute_bill([BillItem(product(30), 1)], amo=c2s, amc=None, day=DAY)
    assert (bill.amo_cents, bill.amc_cents, bill.to_pay_cents) == (300, 700, 0)


def test_expired_mutuelle_rights_or_no_accreditation_pay_nothing() -> None:
    expired = AmcRights("66666666", "X", date(2025, 1, 1), date(2025, 12, 31), 100, accreditation="A")
    unaccredited = AmcRights("66666666", "X", date(2026, 1, 1), date(2026, 12, 31), 100, accreditation=None)
    for amc in (expired, unaccredited):
        assert compute_bill([BillItem(product(65), 1)], amo=AMO, amc=amc, day=DAY).to_pay_cents == 350


def test_without_valid_amo_rights_the_patient_advances_the_amo_share() -> None:
    bill = compute_bill([BillItem(product(65), 1)], amo=None, amc=None, day=DAY)
    assert bill.amo_cents == 650
    assert not bill.amo_tiers_payant
    assert bill.to_pay_cents == 1000
