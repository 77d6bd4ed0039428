"""The matcher's rules on small hand-made cases: what matches, what is proposed, what is never guessed."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from appliance.payments.matcher import reconcile
from appliance.payments.model import (
    Adjustment,
    AdjustmentKind,
    BankCredit,
    ExpectedPart,
    LineStatus,
    ManualMatch,
    MatchConfig,
    Part,
    Remittance,
    RemittanceLine,
    Status,
    advice_for,
)

D = date(2026, 3, 2)


def rem(
    ref: str,
    claims: dict[int, int],
    *,
    payer: str = "CPAM751",
    name: str = "CPAM DE PARIS",
    day: date = D,
    status: LineStatus = LineStatus.PAID,
    code: str = "",
) -> Remittance:
    rid = f"{payer}:{ref}"
    advice = advice_for(code) if code else None
    lines = tuple(
        RemittanceLine(
            rid,
            n,
            Part.AMO,
            cents,
            status,
            reason_code=code,
            reason=advice.reason if advice else "",
            action=advice.action if advice else "",
        )
        for n, cents in claims.items()
    )
    return Remittance(rid, payer, name, day, ref, lines)


def credit(key: str, cents: int, text: str, day: date = D + timedelta(days=1)) -> BankCredit:
    return BankCredit(key=key, booked_on=day, amount_cents=cents, text=text)


def expect(n: int, cents: int, day: date = D - timedelta(days=5)) -> ExpectedPart:
    return ExpectedPart(n, Part.AMO, cents, day)


def test_one_transfer_naming_its_references_pays_several_remittances() -> None:
    a, b = rem("P2603000001", {1: 1000, 2: 500}), rem("P2603000002", {3: 700})
    result = reconcile(
        [a, b],
        [credit("c1", 2200, "VIR SEPA CPAM DE PARIS RSP P2603000001 P2603000002")],
        expected=[expect(1, 1000), expect(2, 500), expect(3, 700)],
    )
    assert result.matches == {a.remittance_id: ("c1", "reference"), b.remittance_id: ("c1", "reference")}
    assert {p.status for p in result.parts} == {Status.MATCHED}
    assert result.credits[0].remittance_ids == (a.remittance_id, b.remittance_id)


def test_a_reference_must_be_a_whole_word() -> None:
    a = rem("P2603000011", {1: 1000})
    result = reconcile([a], [credit("c1", 1000, "VIR P26030000112 AUTRE")])
    assert result.matches == {}


def test_without_reference_a_payers_transfer_matches_by_amount_and_dates() -> None:
    a, b, c = (
        rem("P2603000001", {1: 1000}),
        rem("P2603000002", {2: 2500}),
        rem("P2603000003", {3: 300}, day=D + timedelta(days=1)),
    )
    result = reconcile(
        [a, b, c],
        [
            credit("x", 3500, "VIR CPAM DE PARIS PAIEMENT", D + timedelta(days=2)),
            credit("y", 300, "CPAM751 VIR", D + timedelta(days=3)),
        ],
    )
    assert result.matches[a.remittance_id] == ("x", "amount-same-day")
    assert result.matches[b.remittance_id] == ("x", "amount-same-day")
    assert result.matches[c.remittance_id] == ("y", "amount")


def test_a_credit_from_nobody_known_is_never_matched_even_at_the_exact_amount() -> None:
    a = rem("P2603000001", {1: 1234})
    result = reconcile(
        [a], [credit("cb", 1234, "REMISE CB 0203")], as_of=D + timedelta(days=30), statement_end=D + timedelta(days=30)
    )
    assert result.matches == {}
    assert result.credits[0].status is None  # not a payer's: not reported as unknown either
    assert result.remittances[0].status is Status.PAID_NOT_CREDITED


def test_two_ways_to_make_the_amount_are_proposed_not_guessed() -> None:
    a, b = rem("P2603000001", {1: 1000}), rem("P2603000002", {2: 1000})
    result = reconcile([a, b], [credit("x", 1000, "VIR CPAM DE PARIS")])
    assert result.matches == {}
    assert result.suggestions[0].credit_key == "x"
    assert set(result.suggestions[0].remittance_ids) == {a.remittance_id, b.remittance_id}


def test_dates_outside_the_window_do_not_match_and_the_window_is_configurable() -> None:
    a = rem("P2603000001", {1: 1000})
    late = credit("x", 1000, "VIR CPAM DE PARIS", D + timedelta(days=12))
    assert reconcile([a], [late]).matches == {}
    assert reconcile([a], [late], config=MatchConfig(credit_days_after=12)).matches == {
        a.remittance_id: ("x", "amount")
    }


def test_amount_tolerance_is_configurable() -> None:
    a = rem("P2603000001", {1: 1000})
    charged = credit("x", 995, "VIR CPAM DE PARIS P2603000001")
    assert reconcile([a], [charged]).matches == {}
    assert reconcile([a], [charged], config=MatchConfig(amount_tolerance_cents=5)).matches == {
        a.remittance_id: ("x", "reference")
    }


def test_a_reference_with_the_wrong_amount_is_proposed() -> None:
    a = rem("P2603000001", {1: 1000})
    result = reconcile([a], [credit("x", 900, "VIR XYZ P2603000001")])
    assert result.matches == {} and result.suggestions[0].remittance_ids == (a.remittance_id,)
    assert result.credits[0].status is Status.CREDIT_UNKNOWN  # it names a payment: to explain


def test_claim_statuses_rejected_partial_overdue_pending_and_not_credited() -> None:
    rejected = rem("R2603000001", {1: 0}, status=LineStatus.REJECTED, code="DROI")
    partial = rem("P2603000002", {2: 800}, status=LineStatus.PARTIAL, code="TARI")
    uncredited = rem("P2603000003", {3: 600})
    as_of = D + timedelta(days=40)
    result = reconcile(
        [rejected, partial, uncredited],
        [credit("x", 800, "CPAM DE PARIS P2603000002")],
        expected=[
            expect(1, 500),
            expect(2, 1000),
            expect(3, 600),
            expect(4, 700, D - timedelta(days=40)),
            expect(5, 700, D + timedelta(days=30)),
        ],
        as_of=as_of,
        statement_end=as_of,
    )
    by = {p.claim_number: p for p in result.parts}
    assert by[1].status is Status.REJECTED and "ADRi" in by[1].action and by[1].outstanding_cents == 0
    assert by[2].status is Status.PARTIAL and "Ne pas refacturer" in by[2].action
    assert by[2].credited_cents == 800 and by[2].outstanding_cents == 200
    assert by[3].status is Status.PAID_NOT_CREDITED
    assert by[4].status is Status.UNPAID_OVERDUE and by[4].action
    assert by[5].status is Status.PENDING
    soon = reconcile(
        [uncredited], [], expected=[expect(3, 600)], as_of=D + timedelta(days=2), statement_end=D + timedelta(days=2)
    )
    assert soon.parts[0].status is Status.AWAITING_CREDIT


def test_a_complement_paid_later_completes_a_partial_payment() -> None:
    first = rem("P2603000001", {1: 800}, status=LineStatus.PARTIAL, code="TARI")
    later = rem("C2603000009", {1: 200}, day=D + timedelta(days=20))
    result = reconcile(
        [first, later],
        [credit("x", 800, "CPAM751 P2603000001"), credit("y", 200, "CPAM751 C2603000009", D + timedelta(days=21))],
        expected=[expect(1, 1000)],
    )
    assert result.parts[0].status is Status.MATCHED and result.parts[0].credit_keys == ("x", "y")


def test_manual_decisions_win_over_the_rules() -> None:
    a, b = rem("P2603000001", {1: 1000}), rem("P2603000002", {2: 1000})
    credits = [credit("x", 1000, "VIR CPAM DE PARIS")]
    result = reconcile([a, b], credits, manual=[ManualMatch(b.remittance_id, "x", 3, "vu avec la CPAM")])
    assert result.matches == {b.remittance_id: ("x", "manual")}
    unlinked = reconcile([a], [credit("x", 1000, "CPAM P2603000001")], manual=[ManualMatch(a.remittance_id, None)])
    assert unlinked.matches == {} and unlinked.remittances[0].status is Status.PAID_NOT_CREDITED


def test_lines_for_unknown_claims_are_listed_and_without_claims_the_remittances_say_what_was_billed() -> None:
    a = rem("P2603000001", {1: 1000, 99: 400})
    known = reconcile([a], [credit("x", 1400, "CPAM P2603000001")], expected=[expect(1, 1000)])
    assert [line.claim_number for line in known.unknown_lines] == [99]
    alone = reconcile([a], [credit("x", 1400, "CPAM P2603000001")])
    assert not alone.claims_known and [p.claim_number for p in alone.parts] == [1, 99]
    assert {p.status for p in alone.parts} == {Status.MATCHED}


def test_config_from_toml_table() -> None:
    config = MatchConfig.from_mapping({"amount_tolerance_cents": 2, "payer_aliases": {"88888888": ["HARMONIE"]}})
    assert config.amount_tolerance_cents == 2 and config.payer_aliases == (("88888888", "HARMONIE"),)
    for bad in ({"amount_tolerence_cents": 1}, {"credit_days_after": -1}, {"max_group": "3"}):
        try:
            MatchConfig.from_mapping(bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_a_withholding_is_taken_off_the_transfer_the_bank_shows() -> None:
    withheld = Adjustment(
        "CPAM751:P260302000001", AdjustmentKind.WITHHOLDING, -500, reference="D260000001", nature="IND"
    )
    paid = replace(rem("P260302000001", {1: 1500, 2: 2000}), adjustments=(withheld,))
    assert (paid.paid_cents, paid.total_cents) == (3500, 3000)
    result = reconcile(
        [paid], [credit("c1", 3000, "VIR CPAM DE PARIS RSP P260302000001")], expected=[expect(1, 1500), expect(2, 2000)]
    )
    assert result.matches == {"CPAM751:P260302000001": ("c1", "reference")}
    assert {p.claim_number: p.status for p in result.parts} == {1: Status.MATCHED, 2: Status.MATCHED}
    gross = reconcile([paid], [credit("c2", 3500, "VIR CPAM DE PARIS RSP P260302000001")])
    assert gross.matches == {} and gross.suggestions  # the gross amount is not what was transferred


def test_a_payment_whose_withholdings_take_all_needs_no_credit_and_settles_its_parts() -> None:
    withheld = Adjustment("CPAM751:P2", AdjustmentKind.WITHHOLDING, -1500)
    settled = replace(rem("P2", {1: 1500}), adjustments=(withheld,))
    result = reconcile([settled], [], expected=[expect(1, 1500)])
    assert result.remittances[0].status is None
    (part,) = result.parts
    assert part.status is Status.MATCHED and part.credited_cents == 1500 and part.outstanding_cents == 0
