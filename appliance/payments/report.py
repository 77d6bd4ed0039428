"""The reconciliation report: JSON-ready data (for the back-office page), a summary, a CSV, an HTML page.

:func:`report_data` is the one model every view renders: plain dicts, lists, strings and integer cents,
so ``json.dumps`` takes it as it is. The HTML page draws its chart as inline SVG (no script).
"""

from __future__ import annotations

import csv
import html
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from appliance.payments.matcher import Reconciliation
from appliance.payments.model import AdjustmentKind, Status

STATUS_LABELS: dict[str, str] = {
    Status.MATCHED: "payé et crédité",
    Status.PAID_NOT_CREDITED: "payé, virement non trouvé",
    Status.AWAITING_CREDIT: "payé, virement attendu",
    Status.PARTIAL: "payé en partie",
    Status.REJECTED: "rejeté",
    Status.UNPAID_OVERDUE: "impayé, délai dépassé",
    Status.PENDING: "en attente de paiement",
    Status.CREDIT_UNKNOWN: "virement inexpliqué",
    Status.REMITTED_UNKNOWN_CLAIM: "retour pour une facture inconnue",
}
TO_ACT_ON = (Status.REJECTED, Status.PARTIAL, Status.UNPAID_OVERDUE, Status.PAID_NOT_CREDITED)


def euros(cents: int) -> str:
    """French display of an amount: ``1 234,56 €``."""
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    return f"{sign}{units:,}".replace(",", "\u202f") + f",{rest:02d} €"


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def report_data(result: Reconciliation) -> dict[str, Any]:
    """The whole report as JSON-ready data (amounts in integer cents, dates ISO)."""
    counts: dict[str, int] = defaultdict(int)
    cents: dict[str, int] = defaultdict(int)
    for p in result.parts:
        counts[p.status.value] += 1
        cents[p.status.value] += p.expected_cents
    credits_unknown = [c for c in result.credits if c.status is Status.CREDIT_UNKNOWN]
    payable = [r for r in result.remittances if r.status is not None]
    matched = [r for r in payable if r.status is Status.MATCHED]
    adjustments = [a for r in result.remittances for a in r.remittance.adjustments]
    weeks: dict[date, dict[str, int]] = defaultdict(lambda: {"matched": 0, "outstanding": 0, "rejected": 0})
    for p in result.parts:
        if p.billed_on is None:
            continue
        week = weeks[_week(p.billed_on)]
        week["matched"] += p.credited_cents
        if p.status is Status.REJECTED and p.remitted_cents == 0:
            week["rejected"] += p.expected_cents
        else:
            week["outstanding"] += p.outstanding_cents
    return {
        "as_of": result.as_of.isoformat(),
        "statement_end": result.statement_end.isoformat() if result.statement_end else None,
        "claims_known": result.claims_known,
        "tolerances": {
            "amount_tolerance_cents": result.config.amount_tolerance_cents,
            "credit_days_before": result.config.credit_days_before,
            "credit_days_after": result.config.credit_days_after,
            "unpaid_after_days": result.config.unpaid_after_days,
            "amc_unpaid_after_days": result.config.amc_unpaid_after_days,
        },
        "summary": {
            "parts": len(result.parts),
            "by_status": {s.value: counts.get(s.value, 0) for s in Status if s.value in counts},
            "cents_by_status": {s.value: cents.get(s.value, 0) for s in Status if s.value in cents},
            "expected_cents": sum(p.expected_cents for p in result.parts),
            "credited_cents": sum(p.credited_cents for p in result.parts),
            "outstanding_cents": sum(p.outstanding_cents for p in result.parts),
            "remittances": len(result.remittances),
            "remittances_to_credit": len(payable),
            "remittances_matched": len(matched),
            "auto_matched": sum(1 for r in matched if r.rule != "manual"),
            "credits": len(result.credits),
            "payer_credits_matched": sum(1 for c in result.credits if c.status is Status.MATCHED),
            "credits_unknown": len(credits_unknown),
            "credits_unknown_cents": sum(c.credit.amount_cents for c in credits_unknown),
            "other_credits": sum(1 for c in result.credits if c.status is None),
            "remitted_unknown_claims": len(result.unknown_lines),
            "suggestions": len(result.suggestions),
            "adjustments": len(adjustments),
            "withheld_cents": -sum(a.amount_cents for a in adjustments if a.kind is AdjustmentKind.WITHHOLDING),
            "warnings": len(result.warnings),
        },
        "warnings": list(result.warnings),
        "parts": [
            {
                "claim_number": p.claim_number,
                "part": p.part.value,
                "payer": p.payer,
                "batch_number": p.batch_number,
                "billed_on": p.billed_on.isoformat() if p.billed_on else None,
                "status": p.status.value,
                "status_label": STATUS_LABELS[p.status],
                "expected_cents": p.expected_cents,
                "remitted_cents": p.remitted_cents,
                "credited_cents": p.credited_cents,
                "outstanding_cents": p.outstanding_cents,
                "reason": p.reason,
                "action": p.action,
                "remittances": list(p.remittance_ids),
                "credits": list(p.credit_keys),
            }
            for p in result.parts
        ],
        "remittances": [
            {
                "remittance_id": r.remittance.remittance_id,
                "payer": r.remittance.payer,
                "payer_name": r.remittance.payer_name,
                "paid_on": r.remittance.paid_on.isoformat(),
                "payment_reference": r.remittance.payment_reference,
                "total_cents": r.remittance.total_cents,
                "paid_cents": r.remittance.paid_cents,
                "adjusted_cents": r.remittance.adjusted_cents,
                "adjustments": [
                    {
                        "kind": a.kind.value,
                        "amount_cents": a.amount_cents,
                        "reference": a.reference,
                        "nature": a.nature,
                        "operation": a.operation,
                        "label": a.label,
                        "recorded_on": a.recorded_on.isoformat() if a.recorded_on else None,
                        "balance_cents": a.balance_cents,
                        "source": a.source,
                    }
                    for a in r.remittance.adjustments
                ],
                "status": r.status.value if r.status else None,
                "credit": r.credit_key,
                "rule": r.rule,
            }
            for r in result.remittances
        ],
        "credits": [
            {
                "key": c.credit.key,
                "booked_on": c.credit.booked_on.isoformat(),
                "amount_cents": c.credit.amount_cents,
                "text": c.credit.text,
                "status": c.status.value if c.status else None,
                "remittances": list(c.remittance_ids),
                "rule": c.rule,
                "action": c.action,
                "source": c.credit.source,
            }
            for c in result.credits
            if c.status is not None
        ],
        "unknown_lines": [
            {
                "claim_number": line.claim_number,
                "part": line.part.value,
                "remittance_id": line.remittance_id,
                "paid_cents": line.paid_cents,
                "status": line.status.value,
                "source": line.source,
            }
            for line in result.unknown_lines
        ],
        "suggestions": [
            {"credit": s.credit_key, "remittances": list(s.remittance_ids), "why": s.why} for s in result.suggestions
        ],
        "weeks": [{"week": week.isoformat(), **values} for week, values in sorted(weeks.items())],
    }


def summary_text(data: dict[str, Any]) -> str:
    s = data["summary"]
    lines = [
        f"Rapprochement au {data['as_of']} (relevé jusqu'au {data['statement_end'] or '-'})",
        f"  parts de factures suivies : {s['parts']}, attendu {euros(s['expected_cents'])},"
        f" crédité {euros(s['credited_cents'])}, reste dû {euros(s['outstanding_cents'])}",
    ]
    for status, count in s["by_status"].items():
        lines.append(f"  {STATUS_LABELS[status]:<32} {count:>6}   {euros(s['cents_by_status'][status]):>16}")
    lines.append(
        f"  retours de paiement : {s['remittances_matched']}/{s['remittances_to_credit']} rapprochés d'un virement"
        f" ({s['auto_matched']} automatiquement)"
    )
    lines.append(
        f"  virements inexpliqués : {s['credits_unknown']} ({euros(s['credits_unknown_cents'])});"
        f" autres crédits ignorés : {s['other_credits']}"
    )
    if s["remitted_unknown_claims"]:
        lines.append(f"  lignes de retour pour des factures inconnues : {s['remitted_unknown_claims']}")
    if s["suggestions"]:
        lines.append(f"  propositions à vérifier à la main : {s['suggestions']}")
    if s["adjustments"]:
        lines.append(
            f"  retenues et autres mouvements des paiements : {s['adjustments']} (retenu {euros(s['withheld_cents'])})"
        )
    for warning in data["warnings"]:
        lines.append(f"  attention : {warning}")
    return "\n".join(lines)


CSV_COLUMNS = (
    "claim_number",
    "part",
    "payer",
    "batch_number",
    "billed_on",
    "status",
    "status_label",
    "expected_cents",
    "remitted_cents",
    "credited_cents",
    "outstanding_cents",
    "reason",
    "action",
    "remittances",
    "credits",
)


def write_csv(data: dict[str, Any], path: Path) -> None:
    """One row per claim part, then the unknown credits (claim_number empty), amounts in cents."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for part in data["parts"]:
            writer.writerow([" ".join(v) if isinstance(v, list) else v for v in (part[c] for c in CSV_COLUMNS)])
        for c in data["credits"]:
            if c["status"] == Status.CREDIT_UNKNOWN.value:
                writer.writerow(
                    [
                        "",
                        "",
                        "",
                        "",
                        c["booked_on"],
                        c["status"],
                        STATUS_LABELS[Status.CREDIT_UNKNOWN],
                        0,
                        0,
                        c["amount_cents"],
                        0,
                        c["text"],
                        c["action"],
                        "",
                        c["key"],
                    ]
                )


def chart_svg(weeks: list[dict[str, Any]], width: int = 900, height: int = 280) -> str:
    """Stacked weekly bars (by billing week): matched, outstanding, rejected."""
    if not weeks:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="40">'
            '<text x="4" y="24">Aucune donnée</text></svg>'
        )
    left, bottom, top = 70, 40, 20
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(w["matched"] + w["outstanding"] + w["rejected"] for w in weeks) or 1
    bar = plot_w / len(weeks)
    colours = (
        ("matched", "#2e7d32", "rapproché"),
        ("outstanding", "#ef6c00", "reste dû"),
        ("rejected", "#c62828", "rejeté"),
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img"'
        ' aria-label="Montants rapprochés et restant dus par semaine de facturation">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#444"/>',
    ]
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#ddd"/>')
        tick = euros(int(value) // 100 * 100)[:-5] + " €"  # whole euros
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{tick}</text>')
    for n, w in enumerate(weeks):
        x = left + n * bar + bar * 0.1
        y = top + plot_h
        for key, colour, label in colours:
            h = plot_h * w[key] / peak
            if h > 0:
                y -= h
                out.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.8:.1f}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{html.escape(w['week'])} {label} : {html.escape(euros(w[key]))}</title></rect>"
                )
        if n % max(1, len(weeks) // 12) == 0:
            out.append(
                f'<text x="{x + bar * 0.4:.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle">'
                f"{w['week'][5:]}</text>"
            )
    for n, (_, colour, label) in enumerate(colours):
        out.append(f'<rect x="{left + n * 120}" y="{height - 16}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{left + n * 120 + 14}" y="{height - 7}" font-size="11">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _table(headers: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"


def write_html(data: dict[str, Any], path: Path) -> None:
    """A self-contained page: summary, chart, what to act on, unknown credits, proposals."""
    act_on = [p for p in data["parts"] if p["status"] in {s.value for s in TO_ACT_ON}]
    unknown = [c for c in data["credits"] if c["status"] == Status.CREDIT_UNKNOWN.value]
    parts_html = _table(
        ["facture", "part", "organisme", "facturée le", "état", "attendu", "reçu", "motif", "action conseillée"],
        [
            [
                str(p["claim_number"]),
                p["part"],
                p["payer"],
                p["billed_on"] or "",
                p["status_label"],
                euros(p["expected_cents"]),
                euros(p["credited_cents"]),
                p["reason"],
                p["action"],
            ]
            for p in act_on
        ],
    )
    credits_html = _table(
        ["date", "montant", "libellé", "action conseillée"],
        [[c["booked_on"], euros(c["amount_cents"]), c["text"], c["action"]] for c in unknown],
    )
    adjustments_html = _table(
        ["paiement", "organisme", "date", "mouvement", "montant", "référence", "solde de la dette"],
        [
            [
                r["payment_reference"] or r["remittance_id"],
                r["payer_name"],
                r["paid_on"],
                a["label"],
                euros(a["amount_cents"]),
                a["reference"],
                "" if a["balance_cents"] is None else euros(a["balance_cents"]),
            ]
            for r in data["remittances"]
            for a in r["adjustments"]
        ],
    )
    warnings_html = "".join(f"<li>{html.escape(w)}</li>" for w in data["warnings"])
    suggestions_html = _table(
        ["virement", "retours candidats", "pourquoi"],
        [[s["credit"], ", ".join(s["remittances"]), s["why"]] for s in data["suggestions"]],
    )
    page = f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>Rapprochement au {html.escape(data["as_of"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}pre{{background:#f6f6f6;padding:1em}}</style>
</head><body>
<h1>Rapprochement des paiements au {html.escape(data["as_of"])}</h1>
<pre>{html.escape(summary_text(data))}</pre>
<h2>Montants rapprochés et restant dus, par semaine de facturation</h2>
{chart_svg(data["weeks"])}
<h2>À traiter ({len(act_on)})</h2>
{parts_html}
<h2>Virements inexpliqués ({len(unknown)})</h2>
{credits_html}
<h2>Propositions à vérifier ({len(data["suggestions"])})</h2>
{suggestions_html}
<h2>Retenues et autres mouvements des paiements ({data["summary"]["adjustments"]})</h2>
{adjustments_html}
<h2>Avertissements ({len(data["warnings"])})</h2>
<ul>{warnings_html}</ul>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
