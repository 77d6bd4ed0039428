"""Bank statements: camt.053 and CFONB 120 of the same movements give the same credits; bad files name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.payments.bank import cfonb_amount, parse_camt053, parse_cfonb120, parse_statement
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
    with pytest.raises(PaymentsFileError, match=rf"x, line {n + 1}: entry amount is not an amount"):
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
