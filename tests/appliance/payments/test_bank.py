"""Bank statements: camt.053 and CFONB 120 of the same movements give the same credits; bad files name the line;
camt.053 amounts with up to 5 decimals (ISO 20022) and statements of non-EUR accounts (skipped, with a warning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.payments.bank import cfonb_amount, parse_camt053, parse_cfonb120, parse_statement
from appliance.payments.cli import main
from appliance.payments.model import PaymentsFileError
from sandbox import payments as gen


@pytest.fixture(scope="module")
def activity() -> gen.Activity:
    return gen.generate(months=1, claims_per_day=8, seed=3)


def test_camt053_and_cfonb120_of_the_same_movements_agree(activity: gen.Activity, tmp_path: Path) -> None:
    _, camt, cfonb = gen.write_files(activity, tmp_path)
    a, b = parse_statement(camt), parse_statement(cfonb)
    assert (a.format, b.format) == ("camt.053", "CFONB 120")
    credits = [m for m in activity.movements if m.amount > 0]
    assert len(a.credits) == len(b.credits) == len(credits)
    assert a.debits == b.debits == sum(1 for m in activity.movements if m.amount < 0)
    assert [c.key for c in a.credits] == [c.key for c in b.credits]  # same identity across formats
    assert [c.amount_cents for c in a.credits] == [m.amount for m in credits]
    assert a.end == b.end == activity.end.fromordinal(activity.end.toordinal() - 1)
    first = next(c for c in b.credits if c.debtor)
    assert first.debtor in first.text and first.source.startswith(f"{cfonb}:")


def test_cfonb_amounts_carry_sign_and_last_digit() -> None:
    assert cfonb_amount("0000000001234{", 2, "f", 1) == 12340
    assert cfonb_amount("0000000004843H", 2, "f", 1) == 48438
    assert cfonb_amount("0000000000920}", 2, "f", 1) == -9200
    assert cfonb_amount("0000000000117}", 3, "f", 1) == -117
    with pytest.raises(PaymentsFileError, match="fractions of a cent"):
        cfonb_amount("0000000000117O", 3, "f", 1)
    assert cfonb_amount("0000000000012C", 0, "f", 1) == 12300
    assert gen.cfonb_amount(-9200) == "0000000000920}"
    with pytest.raises(PaymentsFileError, match="f, line 4: amount"):
        cfonb_amount("00000000012 4{", 2, "f", 4)


def _cfonb(activity: gen.Activity) -> list[str]:
    return gen.cfonb120(activity).split("\r\n")


def test_cfonb_errors_name_the_line(activity: gen.Activity) -> None:
    lines = _cfonb(activity)
    edited = list(lines)
    edited[1] = edited[1][:90] + gen.cfonb_amount(1) + edited[1][104:]
    with pytest.raises(PaymentsFileError, match=rf"s, line {len(lines) - 1}: new balance .* incomplete or was edited"):
        parse_cfonb120("\r\n".join(edited), "s")
    with pytest.raises(PaymentsFileError, match="s, line 3: unknown record code '09'"):
        parse_cfonb120("\r\n".join([*lines[:2], "09" + lines[2][2:], *lines[3:]]), "s")
    with pytest.raises(PaymentsFileError, match="s, line 2: record is 125 characters"):
        parse_cfonb120("\r\n".join([lines[0], lines[1] + "XXXXX", *lines[2:]]), "s")
    with pytest.raises(PaymentsFileError, match="has no new balance"):
        parse_cfonb120("\r\n".join(lines[:-3]), "s")
    bad_date = lines[1][:34] + "310226" + lines[1][40:]
    with pytest.raises(PaymentsFileError, match=r"s, line 2: operation date \(columns 35-40\) is not a date"):
        parse_cfonb120("\r\n".join([lines[0], bad_date, *lines[2:]]), "s")


def test_cfonb_without_line_breaks_is_read(activity: gen.Activity) -> None:
    lines = [line for line in _cfonb(activity) if line]
    assert parse_cfonb120("".join(lines), "s").credits == parse_cfonb120("\n".join(lines), "s").credits


def test_camt053_errors_name_the_line(activity: gen.Activity) -> None:
    xml = gen.camt053(activity)
    lines = xml.splitlines()
    n = next(i for i, line in enumerate(lines) if "<Ntry>" in line)
    with pytest.raises(PaymentsFileError, match=rf"x, line {n + 1}: entry amount \(entry E\d+\) is not an amount"):
        parse_camt053("\n".join([*lines[:n], lines[n].replace("</Amt>", "X</Amt>", 1), *lines[n + 1 :]]).encode(), "x")
    edited = "\n".join(
        [*lines[:n], lines[n].replace("<Amt", "<Montant", 1).replace("</Amt>", "</Montant>", 1), *lines[n + 1 :]]
    )
    with pytest.raises(PaymentsFileError, match=rf"x, line {n + 1}: an entry \(Ntry\) without an amount"):
        parse_camt053(edited.encode(), "x")
    with pytest.raises(PaymentsFileError, match=r"x, line \d+: not well-formed XML"):
        parse_camt053(xml[: len(xml) // 2].encode(), "x")
    dropped = "\n".join(lines[:n] + lines[n + 1 :])
    with pytest.raises(PaymentsFileError, match=r"closing balance .* incomplete or was edited"):
        parse_camt053(dropped.encode(), "x")
    with pytest.raises(PaymentsFileError, match="DOCTYPE is not allowed"):
        parse_camt053(b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><Document>&a;</Document>', "x")


def test_an_unknown_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "releve.pdf"
    path.write_bytes(b"%PDF-1.4")
    with pytest.raises(PaymentsFileError, match=r"releve\.pdf, line 1: neither a camt\.053"):
        parse_statement(path)


# ---------------------------------------------------------------------------------------------- camt.053 by the schema


def _entry(amount: str, ref: str, *, version: str, ccy: str = "EUR", label: str = "VIR SEPA CPAM DE PARIS") -> str:
    """A booked credit as camt.053.001.02 or .08 write it (.08: Sts/Cd, the debtor under Pty)."""
    status = "<Sts>BOOK</Sts>" if version == "02" else "<Sts><Cd>BOOK</Cd></Sts>"
    debtor = (
        "<Dbtr><Nm>CPAM DE PARIS</Nm></Dbtr>" if version == "02" else "<Dbtr><Pty><Nm>CPAM DE PARIS</Nm></Pty></Dbtr>"
    )
    return (
        f'<Ntry><Amt Ccy="{ccy}">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd>{status}'
        "<BookgDt><Dt>2026-03-03</Dt></BookgDt><ValDt><Dt>2026-03-03</Dt></ValDt>"
        f"<AcctSvcrRef>{ref}</AcctSvcrRef>"
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs><RltdPties>{debtor}</RltdPties>"
        f"<RmtInf><Ustrd>RSP P260302000001</Ustrd></RmtInf></TxDtls></NtryDtls>"
        f"<AddtlNtryInf>{label}</AddtlNtryInf></Ntry>"
    )


def _stmt(name: str, iban: str, ccy: str, opening: str, closing: str, entries: list[str]) -> str:
    def balance(code: str, amount: str) -> str:
        return (
            f'<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy="{ccy}">{amount}</Amt>'
            "<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-03</Dt></Dt></Bal>"
        )

    return (
        f"<Stmt>\n<Id>{name}</Id><CreDtTm>2026-03-03T23:00:00</CreDtTm>"
        f"<Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>{ccy}</Ccy></Acct>\n"
        + balance("OPBD", opening)
        + balance("CLBD", closing)
        + "\n"
        + "\n".join(entries)
        + "\n</Stmt>"
    )


def _camt(version: str, *statements: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.{version}">\n<BkToCstmrStmt>\n'
        "<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-03-03T23:00:00</CreDtTm></GrpHdr>\n"
        + "\n".join(statements)
        + "\n</BkToCstmrStmt>\n</Document>\n"
    ).encode()


EUR_IBAN, USD_IBAN = "FR7630001007941234567890185", "FR7630001007949876543210123"


@pytest.mark.parametrize("version", ["02", "08"])
def test_camt053_amounts_may_have_up_to_five_decimals(version: str) -> None:
    entries = [_entry("8.850", "E1", version=version), _entry("12.34000", "E2", version=version)]
    raw = _camt(version, _stmt("S1", EUR_IBAN, "EUR", "100.000", "121.19000", entries))
    statement = parse_camt053(raw, "c")
    assert [c.amount_cents for c in statement.credits] == [885, 1234]
    assert statement.credits[0].debtor == "CPAM DE PARIS" and "P260302000001" in statement.credits[0].text
    assert statement.warnings == ()


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("8.855", r"c, line 8: entry amount \(entry E1\) 8\.855 is not a whole number of cents"),
        (
            "8.850001",
            r"c, line 8: entry amount \(entry E1\) is not an amount \(a decimal, at most 18 digits of which 5",
        ),
        ("-8.85", r"c, line 8: entry amount \(entry E1\) is not an amount"),
        ("1234567890123456789", r"c, line 8: entry amount \(entry E1\) is not an amount"),
    ],
)
def test_camt053_refuses_a_fraction_of_a_cent_naming_the_entry(amount: str, message: str) -> None:
    raw = _camt("02", _stmt("S1", EUR_IBAN, "EUR", "0", "8.85", [_entry(amount, "E1", version="02")]))
    with pytest.raises(PaymentsFileError, match=message):
        parse_camt053(raw, "c")


@pytest.mark.parametrize("version", ["02", "08"])
def test_a_statement_of_a_non_eur_account_is_skipped_with_a_warning(version: str) -> None:
    usd = _stmt("S-USD", USD_IBAN, "USD", "50.00", "70.00", [_entry("20.00", "U1", version=version, ccy="USD")])
    eur = _stmt("S-EUR", EUR_IBAN, "EUR", "100.00", "108.85", [_entry("8.85", "E1", version=version)])
    statement = parse_camt053(_camt(version, usd, eur), "c")
    assert [(c.amount_cents, c.account) for c in statement.credits] == [(885, EUR_IBAN)]
    (warning,) = statement.warnings
    assert (
        warning
        == f"c, line 5: statement S-USD (account {USD_IBAN}) is in USD: skipped, only EUR accounts are reconciled"
    )
    only_usd = parse_camt053(_camt(version, usd), "c")
    assert only_usd.credits == () and len(only_usd.warnings) == 1


def test_an_entry_in_another_currency_than_its_eur_account_is_refused() -> None:
    raw = _camt("02", _stmt("S1", EUR_IBAN, "EUR", "0", "8.85", [_entry("8.85", "E1", version="02", ccy="USD")]))
    with pytest.raises(PaymentsFileError, match="c, line 8: an entry in USD on an EUR statement"):
        parse_camt053(raw, "c")


def test_the_report_says_which_statement_was_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    usd = _stmt("S-USD", USD_IBAN, "USD", "50.00", "70.00", [_entry("20.00", "U1", version="08", ccy="USD")])
    eur = _stmt("S-EUR", EUR_IBAN, "EUR", "100.00", "108.85", [_entry("8.850", "E1", version="08")])
    bank = tmp_path / "bank.xml"
    bank.write_bytes(_camt("08", usd, eur))
    (tmp_path / "remittances").mkdir()
    out = tmp_path / "out"
    args = ["reconcile", "--remittances", str(tmp_path / "remittances"), "--bank", str(bank), "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"attention : {bank}, line 5: statement S-USD (account {USD_IBAN}) is in USD: skipped" in printed
    data = json.loads((out / "reconciliation.json").read_text(encoding="utf-8"))
    assert data["warnings"] == [
        f"{bank}, line 5: statement S-USD (account {USD_IBAN}) is in USD: skipped, only EUR accounts are reconciled"
    ]
    assert "S-USD" in (out / "reconciliation.html").read_text(encoding="utf-8")
    assert [c["amount_cents"] for c in data["credits"]] == [885]  # the CPAM credit nothing explains
