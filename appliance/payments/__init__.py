"""Payments: matching the payers' remittances with the bank statement, and following rejections (issue 8).

- :mod:`~appliance.payments.noemie` reads NOEMIE PS remittance files (the published layout, with
  withholdings and control totals) and the sandbox's JSON;
- :mod:`~appliance.payments.bank` reads camt.053 (up to 5 decimals; non-EUR statements skipped with a
  warning) and CFONB 120 statements;
- :mod:`~appliance.payments.matcher` matches claims -> remittance lines -> bank credits (pure);
- :mod:`~appliance.payments.store` imports into the counter database (idempotent), keeps manual
  matches with their audit rows and the last results;
- :mod:`~appliance.payments.report` gives the report as JSON-ready data (:func:`report_data`, what the
  back-office page renders), a CSV and an HTML page with an SVG chart;
- :mod:`~appliance.payments.cli` is ``comptoir reconcile``.

Libraries: the statement parsers use the standard library. On PyPI, ``pycamt`` (MIT, 4 releases,
needs lxml) returns entries as loose dicts without source lines and lets an entry without an amount
through as ``None``; ``python-cfonb`` (LGPL, last release April 2021, pulls toml and semantic-version)
numbers lines from 0, silently attaches a complement record to the previous header, and cannot take
a 0-decimal account; ``mt940`` (Tryton, well kept) reads SWIFT MT940, a third format neither the issue
nor French banks' statement exports need here. Each would still need the checks done here (balances,
line numbers), so both formats are a few hundred lines of stdlib code with tests.
"""

from appliance.payments.matcher import Reconciliation, reconcile
from appliance.payments.model import (
    Adjustment,
    AdjustmentKind,
    BankCredit,
    MatchConfig,
    PaymentsFileError,
    Remittance,
    Status,
)
from appliance.payments.report import report_data

__all__ = [
    "Adjustment",
    "AdjustmentKind",
    "BankCredit",
    "MatchConfig",
    "PaymentsFileError",
    "Reconciliation",
    "Remittance",
    "Status",
    "reconcile",
    "report_data",
]
