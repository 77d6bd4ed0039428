"""Reconciliation benchmark: auto-match rate and false matches on generated months, side by side.

Each seed generates months of activity with :mod:`sandbox.payments` (grouped transfers, partial
payments, rejections, withholdings, a late payer, references cut or missing on bank labels, a lost
transfer, card takings...), writes the NOEMIE PS files (published layout), the camt.053 and the CFONB
120 statement, parses them back and matches with, in the same run:

- ``comptoir``: :func:`appliance.payments.reconcile` as shipped;
- ``comptoir, no references``: the same on credits whose labels lost every payment reference (only
  the amount, payer and date rules can work);
- ``naive 1:1 amount``: the peer a spreadsheet does: each credit, in date order, pays the first
  unmatched remittance of exactly its amount, whoever the payer and whatever the date;
- ``limit``: the ground truth (every remittance whose transfer reached the statement).

    python bench/reconcile.py [--quick] [--months N] [--claims-per-day N] [--seeds N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.payments.bank import parse_statement
from appliance.payments.matcher import reconcile
from appliance.payments.model import BankCredit, Remittance, Status
from appliance.payments.noemie import load_remittances
from sandbox import payments as gen

OUTCOMES = {
    "paid": {Status.MATCHED},
    "partial": {Status.PARTIAL},
    "rejected": {Status.REJECTED},
    "unpaid": {Status.PENDING, Status.UNPAID_OVERDUE},
    "not-credited": {Status.PAID_NOT_CREDITED},
    "awaiting": {Status.AWAITING_CREDIT},
}
MATCHERS = ("comptoir", "comptoir, no references", "naive 1:1 amount", "limit (ground truth)")


@dataclass(slots=True)
class Row:
    matcher: str
    statement: str
    creditable: int = 0
    matched: int = 0
    right: int = 0
    wrong: int = 0
    parts: int = 0
    parts_right: int = 0
    unknown_flagged: int = 0
    unknown_truth: int = 0
    ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.right / self.creditable if self.creditable else 0.0


def naive(remittances: Sequence[Remittance], credits: Sequence[BankCredit]) -> dict[str, str]:
    """Each credit pays the first unmatched remittance of exactly its amount (any payer, any date)."""
    free = sorted((r for r in remittances if r.total_cents > 0), key=lambda r: (r.paid_on, r.remittance_id))
    matches: dict[str, str] = {}
    for c in sorted(credits, key=lambda c: (c.booked_on, c.key)):
        for r in free:
            if r.remittance_id not in matches and r.total_cents == c.amount_cents:
                matches[r.remittance_id] = c.key
                break
    return matches


def strip_references(credits: Sequence[BankCredit], remittances: Sequence[Remittance]) -> list[BankCredit]:
    references = [r.payment_reference for r in remittances if r.payment_reference]
    stripped = []
    for c in credits:
        text = c.text
        for ref in references:
            text = text.replace(ref, "")
        stripped.append(replace(c, text=text))
    return stripped


def run_benchmark(args: argparse.Namespace) -> list[Row]:
    rows = {(m, s): Row(m, s) for s in ("camt.053", "CFONB 120") for m in MATCHERS}
    for seed in range(1, args.seeds + 1):
        activity = gen.generate(months=args.months, claims_per_day=args.claims_per_day, seed=seed)
        expected = activity.expected()
        with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
            directory, camt, cfonb = gen.write_files(activity, Path(tmp))
            remittances = load_remittances(directory)
            statements = [parse_statement(camt), parse_statement(cfonb)]
        creditable = {rid for rid, ref in activity.truth.items() if ref is not None}
        for statement in statements:
            ref_of = {c.key: c.bank_reference for c in statement.credits}
            end = statement.end
            for name in MATCHERS:
                row = rows[(name, statement.format)]
                row.creditable += len(creditable)
                if name == "limit (ground truth)":
                    row.matched += len(creditable)
                    row.right += len(creditable)
                    continue
                started = time.perf_counter()
                if name == "naive 1:1 amount":
                    found = naive(remittances, statement.credits)
                    ms = (time.perf_counter() - started) * 1000
                    matches = {rid: ref_of[key] for rid, key in found.items()}
                else:
                    credits = list(statement.credits)
                    if name == "comptoir, no references":
                        credits = strip_references(credits, remittances)
                        started = time.perf_counter()
                    result = reconcile(remittances, credits, expected=expected, statement_end=end)
                    ms = (time.perf_counter() - started) * 1000
                    matches = {rid: ref_of[key] for rid, (key, _) in result.matches.items()}
                    by_part = {(p.claim_number, p.part): p.status for p in result.parts}
                    row.parts += len(activity.outcome)
                    row.parts_right += sum(
                        1 for key, outcome in activity.outcome.items() if by_part.get(key) in OUTCOMES[outcome]
                    )
                    flagged = {c.credit.bank_reference for c in result.credits if c.status is Status.CREDIT_UNKNOWN}
                    row.unknown_flagged += len(flagged & activity.unexplained)
                    row.unknown_truth += len(activity.unexplained)
                row.ms.append(ms)
                row.matched += len(matches)
                row.right += sum(1 for rid, ref in matches.items() if activity.truth.get(rid) == ref)
                row.wrong += sum(1 for rid, ref in matches.items() if activity.truth.get(rid) != ref)
    return list(rows.values())


def print_report(rows: Sequence[Row], args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    out(
        f"Reconciliation on {args.seeds} generated run(s) of {args.months} month(s), ~{args.claims_per_day}"
        " claims a working day (remittances = payments to find on the statement)"
    )
    header = (
        f"{'matcher':<26}{'statement':<11}{'to find':>8}{'matched':>8}{'right':>7}{'false':>7}{'auto rate':>10}"
        f"{'parts ok':>10}{'unknown':>9}{'ms/run':>8}"
    )
    out(header)
    out("-" * len(header))
    for r in rows:
        parts = f"{r.parts_right / r.parts:.2%}" if r.parts else "-"
        unknown = f"{r.unknown_flagged}/{r.unknown_truth}" if r.unknown_truth else "-"
        ms = f"{sum(r.ms) / len(r.ms):.0f}" if r.ms else "-"
        out(
            f"{r.matcher:<26}{r.statement:<11}{r.creditable:>8}{r.matched:>8}{r.right:>7}{r.wrong:>7}"
            f"{r.rate:>10.2%}{parts:>10}{unknown:>9}{ms:>8}"
        )
    out("")
    out("to find: remittances whose transfer reached the statement; right/false: matched to the credit that")
    out("paid them / to another one; parts ok: claim parts whose status is what was generated (paid, partial,")
    out("rejected, unpaid, lost transfer, transfer after the statement); unknown: payer credits nothing explains")
    out("that were flagged, over those generated.")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 months, 10 claims a day")
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--claims-per-day", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.months, args.claims_per_day = 1, 2, 10
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print_report(run_benchmark(args), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
