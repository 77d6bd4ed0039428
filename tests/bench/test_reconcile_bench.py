"""The reconciliation benchmark measures what it claims: behaviour only, never speed."""

from __future__ import annotations

import pytest

from bench.reconcile import MATCHERS, Row, naive, parse_args, print_report, run_benchmark
from sandbox import payments as gen


@pytest.fixture(scope="module")
def quick() -> tuple[list[Row], str]:
    args = parse_args(["--quick"])
    rows = run_benchmark(args)
    lines: list[str] = []
    print_report(rows, args, out=lines.append)
    return rows, "\n".join(lines)


def test_every_matcher_and_statement_has_a_row(quick: tuple[list[Row], str]) -> None:
    rows, text = quick
    assert {(r.matcher, r.statement) for r in rows} == {(m, s) for m in MATCHERS for s in ("camt.053", "CFONB 120")}
    for matcher in MATCHERS:
        assert matcher in text
    assert "auto rate" in text and "false" in text


def test_comptoir_finds_the_transfers_without_false_matches_and_the_naive_peer_does_not(
    quick: tuple[list[Row], str],
) -> None:
    rows, _ = quick
    by = {(r.matcher, r.statement): r for r in rows}
    for statement in ("camt.053", "CFONB 120"):
        ours, peer, limit = (by[(m, statement)] for m in ("comptoir", "naive 1:1 amount", "limit (ground truth)"))
        assert ours.wrong == 0 and ours.rate >= 0.97
        assert ours.parts_right / ours.parts >= 0.99
        assert ours.unknown_flagged == ours.unknown_truth > 0
        assert limit.right == limit.creditable == ours.creditable
        assert peer.rate < ours.rate


def test_the_naive_peer_matches_any_payer_by_amount_alone() -> None:
    activity = gen.generate(months=1, claims_per_day=5, seed=2)
    remittance = next(r for r in activity.returns if r.reference and r.total > 0)
    from appliance.payments.model import BankCredit

    credit = BankCredit("k", remittance.paid_on, remittance.total, "REMISE CB")
    from appliance.payments.noemie import parse_noemie

    parsed = parse_noemie(gen.noemie_file(remittance.payer, [remittance], remittance.paid_on, 1), "f")
    assert naive(parsed, [credit]) == {parsed[0].remittance_id: "k"}  # a card takings credit, taken as a payment
