"""Bank statements: ISO 20022 camt.053 (XML) and the French CFONB 120 (fixed width), to bank credits.

Both are parsed here with the standard library (``xml.parsers.expat``, fixed-width slicing): the
PyPI candidates were checked and set aside (see ``appliance/payments/__init__.py``). What is kept:
booked credits (debits, reversals and pending entries are counted and skipped), their amount in
cents, dates, and every text that may carry the payer's payment reference (labels, remittance
information, end-to-end id, debtor name). Balances are checked (opening + movements = closing) so a
truncated or edited file is refused; every problem names the file and the line. camt.053 amounts
may carry up to 5 decimals as ISO 20022 allows (``8.850`` is 8.85 €; a fraction of a cent is refused);
a statement (``Stmt``) of a non-EUR account is skipped with a warning (:attr:`BankStatement.warnings`)
instead of refusing the whole file. Versions .001.02 to .001.08 read alike (only local names are used).
"""

from __future__ import annotations

import hashlib
import re
import xml.parsers.expat  # DTDs (hence entities) are refused below
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from appliance.payments.model import BankCredit, BankStatement, PaymentsFileError, normalise
from appliance.payments.noemie import decode_text

# ---------------------------------------------------------------------------------------------- shared


def credit_key(booked_on: date, amount_cents: int, bank_reference: str, text: str) -> str:
    """Identity of a credit across re-imports and formats: the day, the amount and the bank's own
    reference for the entry (or, without one, what the label says)."""
    basis = bank_reference.strip() or normalise(text)
    digest = hashlib.sha256(f"{booked_on}|{amount_cents}|{basis}".encode()).hexdigest()[:10]
    return f"{booked_on:%Y%m%d}-{amount_cents}-{digest}"


def _unique_keys(credits: list[BankCredit]) -> tuple[BankCredit, ...]:
    """Two identical entries in one statement stay two credits (the second key gets a suffix)."""
    seen: dict[str, int] = {}
    result = []
    for c in credits:
        n = seen.get(c.key, 0) + 1
        seen[c.key] = n
        if n > 1:
            c = replace(c, key=f"{c.key}-{n}")
        result.append(c)
    return tuple(result)


_DECIMAL = re.compile(r"^\+?(\d*)(?:\.(\d*))?$")


def _cents(text: str, source: str, line: int, what: str) -> int:
    """An ISO 20022 ``ActiveOrHistoricCurrencyAndAmount`` (a decimal, at most 18 digits of which 5 after
    the point) in euro cents: ``8.850`` is 885; ``8.855`` is not a whole number of cents (the euro has 2
    minor units) and is refused."""
    text = text.strip()
    m = _DECIMAL.match(text)
    units, decimals = (m.group(1), m.group(2) or "") if m else ("", "")
    if m is None or not (units or decimals) or len(decimals) > 5 or len(units.lstrip("0") + decimals) > 18:
        raise PaymentsFileError(
            source, line, f"{what} is not an amount (a decimal, at most 18 digits of which 5 decimals): {text!r}"
        )
    if decimals[2:].strip("0"):
        raise PaymentsFileError(source, line, f"{what} {text} is not a whole number of cents (the euro has 2 decimals)")
    return int(units or "0") * 100 + int(decimals[:2].ljust(2, "0"))


# ---------------------------------------------------------------------------------------------- camt.053


@dataclass(slots=True)
class Node:
    """An XML element with its line, local names only (namespaces dropped)."""

    tag: str
    line: int
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def find(self, *path: str) -> Node | None:
        node: Node | None = self
        for name in path:
            if node is None:
                return None
            node = next((c for c in node.children if c.tag == name), None)
        return node

    def findall(self, name: str) -> list[Node]:
        return [c for c in self.children if c.tag == name]

    def text_of(self, *path: str) -> str:
        node = self.find(*path)
        return node.text.strip() if node is not None else ""

    def iter(self, name: str) -> list[Node]:
        found = [self] if self.tag == name else []
        for c in self.children:
            found.extend(c.iter(name))
        return found


def parse_xml(raw: bytes, source: str) -> Node:
    """A tree of :class:`Node` with line numbers. DTDs (hence entities) are refused."""
    parser = xml.parsers.expat.ParserCreate(namespace_separator="}")
    stack: list[Node] = []
    root: list[Node] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        node = Node(name.rsplit("}", 1)[-1], parser.CurrentLineNumber, dict(attrs))
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    def doctype(*_: object) -> None:
        raise PaymentsFileError(source, parser.CurrentLineNumber, "a DOCTYPE is not allowed in a bank statement")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(raw, True)
    except xml.parsers.expat.ExpatError as exc:
        raise PaymentsFileError(
            source, exc.lineno, f"not well-formed XML: {xml.parsers.expat.ErrorString(exc.code)}"
        ) from None
    return root[0]


def _xml_date(node: Node | None, source: str, what: str) -> date | None:
    if node is None:
        return None
    text = node.text_of("Dt") or node.text_of("DtTm")
    if not text:
        raise PaymentsFileError(source, node.line, f"{what} has neither Dt nor DtTm")
    try:
        return datetime.fromisoformat(text[:10]).date()
    except ValueError:
        raise PaymentsFileError(source, node.line, f"{what} is not a date: {text!r}") from None


def _party_name(party: Node | None) -> str:
    if party is None:
        return ""
    return party.text_of("Nm") or party.text_of("Pty", "Nm")


def parse_camt053(raw: bytes, source: str) -> BankStatement:
    root = parse_xml(raw, source)
    namespace_hint = raw[:2000].decode("ascii", errors="ignore")
    if root.tag != "Document" or "camt.05" not in namespace_hint:
        raise PaymentsFileError(source, root.line, f"not a camt.053 statement (root element {root.tag!r})")
    message = root.find("BkToCstmrStmt") or root.find("BkToCstmrAcctRpt")
    if message is None:
        raise PaymentsFileError(source, root.line, "no BkToCstmrStmt in the document")
    statements = message.findall("Stmt") or message.findall("Rpt")
    if not statements:
        raise PaymentsFileError(source, message.line, "no statement (Stmt) in the document")
    credits: list[BankCredit] = []
    debits = 0
    starts: list[date] = []
    ends: list[date] = []
    warnings: list[str] = []
    for stmt in statements:
        account = stmt.text_of("Acct", "Id", "IBAN") or stmt.text_of("Acct", "Id", "Othr", "Id")
        currency = _statement_currency(stmt)
        if currency != "EUR":
            name = stmt.text_of("Id") or "?"
            warnings.append(
                f"{source}, line {stmt.line}: statement {name} (account {account or '?'}) is in {currency}:"
                " skipped, only EUR accounts are reconciled"
            )
            continue
        balances: dict[str, tuple[int, Node]] = {}
        for bal in stmt.findall("Bal"):
            code = bal.text_of("Tp", "CdOrPrtry", "Cd")
            amt = bal.find("Amt")
            if amt is None:
                raise PaymentsFileError(source, bal.line, f"balance {code} without Amt")
            if amt.attrs.get("Ccy", "EUR") != "EUR":
                raise PaymentsFileError(source, amt.line, f"balance {code} in {amt.attrs['Ccy']} on an EUR statement")
            value = _cents(amt.text, source, amt.line, f"balance {code}")
            sign = -1 if bal.text_of("CdtDbtInd") == "DBIT" else 1
            balances[code] = (sign * value, bal)
            when = _xml_date(bal.find("Dt"), source, f"balance {code} date")
            if when is not None:
                (starts if code in ("OPBD", "PRCD") else ends if code in ("CLBD",) else []).append(when)
        to_date = stmt.find("FrToDt")
        if to_date is not None:
            for tag, bucket in (("FrDtTm", starts), ("ToDtTm", ends)):
                text = to_date.text_of(tag)
                if text:
                    bucket.append(datetime.fromisoformat(text[:10]).date())
        movement = 0
        for entry in stmt.findall("Ntry"):
            amt = entry.find("Amt")
            if amt is None:
                raise PaymentsFileError(source, entry.line, "an entry (Ntry) without an amount (Amt)")
            if amt.attrs.get("Ccy", "EUR") != "EUR":
                raise PaymentsFileError(
                    source,
                    amt.line,
                    f"an entry in {amt.attrs['Ccy']} on an EUR statement: entries are in the account's currency",
                )
            cents = _cents(amt.text, source, amt.line, f"entry amount ({_entry_name(entry)})")
            direction = entry.text_of("CdtDbtInd")
            if direction not in ("CRDT", "DBIT"):
                raise PaymentsFileError(source, entry.line, f"CdtDbtInd must be CRDT or DBIT, not {direction!r}")
            status = entry.text_of("Sts") or entry.text_of("Sts", "Cd")
            booked = status in ("BOOK", "")
            if booked:
                movement += cents if direction == "CRDT" else -cents
            reversal = entry.text_of("RvslInd").lower() == "true"
            if direction == "DBIT" or reversal or not booked:
                debits += direction == "DBIT"
                continue
            booked_on = _xml_date(entry.find("BookgDt"), source, "booking date")
            if booked_on is None:
                raise PaymentsFileError(source, entry.line, "a booked credit without a booking date (BookgDt)")
            credits.extend(_camt_credits(entry, cents, booked_on, account, source))
        if "OPBD" in balances and "CLBD" in balances:
            opening, _ = balances["OPBD"]
            closing, node = balances["CLBD"]
            if opening + movement != closing:
                raise PaymentsFileError(
                    source,
                    node.line,
                    f"closing balance {closing / 100:.2f} ≠ opening {opening / 100:.2f} + booked entries"
                    f" {movement / 100:.2f}: the statement is incomplete or was edited",
                )
    all_days = [c.booked_on for c in credits]
    start = min(starts) if starts else min(all_days, default=None)
    end = max(ends) if ends else max(all_days, default=None)
    return BankStatement(_unique_keys(credits), debits, start, end, source, "camt.053", tuple(warnings))


def _statement_currency(stmt: Node) -> str:
    """The account's currency: ``Acct/Ccy``, else that of its first balance or entry amount (EUR if none says)."""
    declared = stmt.text_of("Acct", "Ccy")
    if declared:
        return declared.upper()
    for node in [*(b.find("Amt") for b in stmt.findall("Bal")), *(n.find("Amt") for n in stmt.findall("Ntry"))]:
        if node is not None and node.attrs.get("Ccy"):
            return node.attrs["Ccy"].upper()
    return "EUR"


def _entry_name(entry: Node) -> str:
    """How the report names an entry: the bank's reference, else its line."""
    reference = entry.text_of("AcctSvcrRef") or entry.text_of("NtryRef")
    return f"entry {reference}" if reference else f"entry of line {entry.line}"


def _camt_credits(entry: Node, cents: int, booked_on: date, account: str, source: str) -> list[BankCredit]:
    value_on = _xml_date(entry.find("ValDt"), source, "value date")
    entry_ref = entry.text_of("AcctSvcrRef") or entry.text_of("NtryRef")
    entry_texts = [entry.text_of("AddtlNtryInf")]
    details = [tx for d in entry.findall("NtryDtls") for tx in d.findall("TxDtls")]
    parts: list[tuple[int | None, list[str], str, str]] = []
    for tx in details:
        texts = [u.text.strip() for rmt in tx.findall("RmtInf") for u in rmt.findall("Ustrd")]
        texts += [rmt.text_of("Strd", "CdtrRefInf", "Ref") for rmt in tx.findall("RmtInf")]
        texts += [tx.text_of("Refs", "EndToEndId"), tx.text_of("AddtlTxInf")]
        debtor = _party_name(tx.find("RltdPties", "Dbtr"))
        amount_node = tx.find("Amt") or tx.find("AmtDtls", "TxAmt", "Amt")
        amount = _cents(amount_node.text, source, amount_node.line, "transaction amount") if amount_node else None
        parts.append((amount, texts, debtor, tx.text_of("Refs", "AcctSvcrRef")))
    split = len(parts) > 1 and all(p[0] is not None for p in parts) and sum(p[0] or 0 for p in parts) == cents
    if split:
        return [
            _credit(
                booked_on,
                amount or 0,
                f"{entry_ref}/{n}" if entry_ref else ref,
                texts,
                debtor,
                value_on,
                account,
                f"{source}:{entry.line}",
            )
            for n, (amount, texts, debtor, ref) in enumerate(parts, start=1)
        ]
    texts = entry_texts + [t for p in parts for t in p[1]]
    debtor = next((p[2] for p in parts if p[2]), "")
    return [_credit(booked_on, cents, entry_ref, texts, debtor, value_on, account, f"{source}:{entry.line}")]


def _credit(
    booked_on: date,
    cents: int,
    reference: str,
    texts: list[str],
    debtor: str,
    value_on: date | None,
    account: str,
    source: str,
) -> BankCredit:
    text = " ".join(t for t in [debtor, *texts] if t)
    return BankCredit(
        key=credit_key(booked_on, cents, reference, text),
        booked_on=booked_on,
        amount_cents=cents,
        text=text,
        value_on=value_on,
        debtor=debtor,
        bank_reference=reference,
        account=account,
        source=source,
    )


# ---------------------------------------------------------------------------------------------- CFONB 120

CFONB_WIDTH = 120


@dataclass(slots=True)
class _Movement:
    line: int
    amount: int
    booked_on: date
    value_on: date
    texts: list[str]
    reference: str
    account: str
    debtor: str = ""


_CREDIT_SIGNS = {c: i for i, c in enumerate("{ABCDEFGHI")}
_DEBIT_SIGNS = {c: i for i, c in enumerate("}JKLMNOPQR")}


def cfonb_amount(field_text: str, decimals: int, source: str, line: int) -> int:
    """A CFONB amount (13 digits + a last character carrying the last digit and the sign) in cents."""
    digits, last = field_text[:13], field_text[13:14]
    if not digits.isdigit() or (last not in _CREDIT_SIGNS and last not in _DEBIT_SIGNS):
        raise PaymentsFileError(source, line, f"amount (columns 91-104) is not a CFONB amount: {field_text!r}")
    sign = 1 if last in _CREDIT_SIGNS else -1
    value = int(digits) * 10 + (_CREDIT_SIGNS.get(last) or _DEBIT_SIGNS.get(last) or 0)
    if decimals > 2:
        factor = int(10 ** (decimals - 2))
        if value % factor:
            raise PaymentsFileError(source, line, f"amount {field_text!r} has fractions of a cent")
        value //= factor
    else:
        value *= int(10 ** (2 - decimals))
    return sign * value


def _cfonb_date(text: str, source: str, line: int, what: str) -> date:
    try:
        return datetime.strptime(text, "%d%m%y").date()
    except ValueError:
        raise PaymentsFileError(source, line, f"{what} is not a date DDMMYY: {text!r}") from None


def parse_cfonb120(text: str, source: str) -> BankStatement:
    """A CFONB 120-character statement: 01 old balance, 04 movement, 05 complement, 07 new balance."""
    records = text.splitlines()
    if len(records) == 1 and len(records[0]) > CFONB_WIDTH and len(records[0]) % CFONB_WIDTH == 0:
        records = [records[0][i : i + CFONB_WIDTH] for i in range(0, len(records[0]), CFONB_WIDTH)]
    credits: list[BankCredit] = []
    debits = 0
    days: list[date] = []
    start: date | None = None
    account: str | None = None
    balance = 0
    current: _Movement | None = None
    pending: list[_Movement] = []

    def flush() -> None:
        nonlocal current
        if current is not None:
            pending.append(current)
            current = None

    for number, record in enumerate(records, start=1):
        if not record.strip():
            continue
        if len(record) > CFONB_WIDTH and record[CFONB_WIDTH:].strip():
            raise PaymentsFileError(source, number, f"record is {len(record)} characters, CFONB 120 has 120")
        record = record[:CFONB_WIDTH].ljust(CFONB_WIDTH)
        code = record[0:2]
        decimals_text = record[19]
        if code in ("01", "04", "07") and not decimals_text.isdigit():
            raise PaymentsFileError(source, number, f"number of decimals (column 20) is not a digit: {decimals_text!r}")
        if code == "01":
            if account is not None:
                raise PaymentsFileError(source, number, f"a new account (01) while account {account} is still open")
            account = record[21:32].strip()
            balance = cfonb_amount(record[90:104], int(decimals_text), source, number)
            opened = _cfonb_date(record[34:40], source, number, "old balance date (columns 35-40)")
            start = opened if start is None else min(start, opened)
        elif code == "04":
            if account is None:
                raise PaymentsFileError(source, number, "a movement (04) before any old balance (01)")
            flush()
            amount = cfonb_amount(record[90:104], int(decimals_text), source, number)
            balance += amount
            if amount < 0:
                debits += 1
                continue
            current = _Movement(
                line=number,
                amount=amount,
                booked_on=_cfonb_date(record[34:40], source, number, "operation date (columns 35-40)"),
                value_on=_cfonb_date(record[42:48], source, number, "value date (columns 43-48)"),
                texts=[record[48:79].strip(), record[104:120].strip()],
                reference=record[81:88].strip(),
                account=account,
            )
        elif code == "05":
            if account is None:
                raise PaymentsFileError(source, number, "a complement (05) before any old balance (01)")
            if current is None:
                if pending or debits:
                    continue  # the complement of a debit: nothing to keep
                raise PaymentsFileError(source, number, "a complement (05) that follows no movement (04)")
            qualifier, info = record[45:48], record[48:118].strip()
            if qualifier == "NPY":
                current.debtor = info
            current.texts.append(info)
        elif code == "07":
            if account is None:
                raise PaymentsFileError(source, number, "a new balance (07) without an old balance (01)")
            flush()
            closing = cfonb_amount(record[90:104], int(decimals_text), source, number)
            if closing != balance:
                raise PaymentsFileError(
                    source,
                    number,
                    f"new balance {closing / 100:.2f} ≠ old balance + movements {balance / 100:.2f}:"
                    " the statement is incomplete or was edited",
                )
            days.append(_cfonb_date(record[34:40], source, number, "new balance date (columns 35-40)"))
            account = None
        else:
            raise PaymentsFileError(source, number, f"unknown record code {code!r} (CFONB 120 has 01, 04, 05, 07)")
    flush()
    if account is not None:
        raise PaymentsFileError(source, len(records), f"account {account} has no new balance (07): file truncated?")
    for m in pending:
        texts = [t for t in m.texts if t]
        credits.append(
            _credit(m.booked_on, m.amount, m.reference, texts, m.debtor, m.value_on, m.account, f"{source}:{m.line}")
        )
    end = max(days) if days else max((c.booked_on for c in credits), default=None)
    return BankStatement(_unique_keys(credits), debits, start, end, source, "CFONB 120")


# ---------------------------------------------------------------------------------------------- any


def parse_statement(path: Path) -> BankStatement:
    """A camt.053 (XML) or CFONB 120 file, told apart by its content."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PaymentsFileError(source, None, f"cannot read the file: {exc.strerror}") from None
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        return parse_camt053(raw, source)
    if head[:1].isdigit():
        return parse_cfonb120(decode_text(raw), source)
    raise PaymentsFileError(source, 1, "neither a camt.053 XML statement nor a CFONB 120 file")
