"""``comptoir reconcile``: match the payers' remittances with the bank statement and report.

:func:`register` adds the command to ``comptoir`` (``appliance/cli.py``). Exit status: 0 done (the
report may still list things to act on); 1 a file could not be read (the message names the file and
the line) or the database refused; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

from appliance.payments.bank import parse_statement
from appliance.payments.matcher import reconcile
from appliance.payments.model import MatchConfig, PaymentsFileError
from appliance.payments.noemie import load_remittances
from appliance.payments.report import report_data, summary_text, write_csv, write_html
from appliance.store.database import StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _config(path: Path | None) -> MatchConfig:
    if path is None:
        return MatchConfig()
    with path.open("rb") as handle:
        table: dict[str, Any] = tomllib.load(handle).get("payments", {})
    return MatchConfig.from_mapping(table)


def cmd_reconcile(args: argparse.Namespace) -> int:
    try:
        config = _config(args.config)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"comptoir reconcile: {args.config}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    as_of = date.fromisoformat(args.as_of) if args.as_of else None
    try:
        remittances = load_remittances(args.remittances)
        statements = [parse_statement(path) for path in args.bank]
        if args.db is not None:
            from appliance.payments.store import open_payments_database, run

            key = args.key or (Path(os.environ["COMPTOIR_KEY"]) if os.environ.get("COMPTOIR_KEY") else None)
            db = open_payments_database(args.db, key_file=key)
            try:
                result, imported = run(db, remittances, statements, config=config, as_of=as_of)
            finally:
                db.close()
            print(
                f"importé : {imported.remittances} retours, {imported.lines} lignes, {imported.credits} crédits"
                " (ce qui était déjà en base n'est pas compté)"
            )
        else:
            credits = [c for s in statements for c in s.credits]
            end = max((s.end for s in statements if s.end is not None), default=None)
            warnings = [w for s in statements for w in s.warnings]
            result = reconcile(remittances, credits, config=config, as_of=as_of, statement_end=end, warnings=warnings)
    except PaymentsFileError as exc:
        print(f"comptoir reconcile: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except StoreError as exc:
        print(f"comptoir reconcile: database: {exc}", file=sys.stderr)
        return EXIT_FAILED
    data = report_data(result)
    print(summary_text(data))
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    write_csv(data, out / "reconciliation.csv")
    write_html(data, out / "reconciliation.html")
    (out / "reconciliation.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"rapport : {out / 'reconciliation.html'}, {out / 'reconciliation.csv'}, {out / 'reconciliation.json'}")
    return EXIT_OK


def register(commands: Any) -> None:
    """Add ``reconcile`` to the ``comptoir`` sub-commands."""
    parser = commands.add_parser("reconcile", help="match payers' remittances with the bank statement and report")
    parser.add_argument(
        "--remittances", type=Path, required=True, metavar="DIR", help="directory of NOEMIE PS or sandbox JSON files"
    )
    parser.add_argument(
        "--bank",
        type=Path,
        required=True,
        action="append",
        metavar="FILE",
        help="bank statement, camt.053 XML or CFONB 120 (repeat for several)",
    )
    parser.add_argument("--db", type=Path, help="counter database: claims to follow, imports and results kept there")
    parser.add_argument("--key", type=Path, help="field key file, keys the audit rows (default: $COMPTOIR_KEY)")
    parser.add_argument("--out", type=Path, default=Path("out/reconcile"), help="where the CSV and HTML go")
    parser.add_argument("--config", type=Path, help="TOML file with a [payments] table of tolerances")
    parser.add_argument("--as-of", metavar="YYYY-MM-DD", help="the day delays are counted to (default: last date seen)")
    parser.set_defaults(func=cmd_reconcile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="comptoir")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
