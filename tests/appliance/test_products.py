"""The product reference table: the shipped sandbox table loads, bad rows name their line and problem."""

from pathlib import Path

import pytest

from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable, cip13_problem, ean13_check_digit

HEADER = "cip13,name,price_cents,rate_pct,list\n"
GOOD = "3400930000120,DOLIPRANE 1000 mg cp B/8,196,65,\n"


def _table(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "products.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_table_loads_about_thirty_valid_medicines() -> None:
    table = ProductTable.load(DEFAULT_PRODUCTS_PATH)
    assert 25 <= len(table) <= 40
    for product in table:
        assert cip13_problem(product.cip13) is None
        assert product.rate_pct in {0, 15, 30, 65, 100}
        assert product.list in {"", "I", "II"}
        assert product.price_cents > 0
    assert {p.rate_pct for p in table} == {0, 15, 30, 65, 100}
    assert {p.list for p in table} == {"", "I", "II"}


def test_get_finds_a_product_by_cip13_and_none_otherwise() -> None:
    table = ProductTable.load()
    doliprane = table.get("3400930000120")
    assert doliprane is not None
    assert doliprane.name.startswith("DOLIPRANE 1000")
    assert (doliprane.price_cents, doliprane.rate_pct, doliprane.list) == (196, 65, "")
    assert table.get("3400930000137") is None
    assert "3400930000120" in table


def test_a_quoted_name_with_a_comma_is_read_whole() -> None:
    product = ProductTable.load().get("3400930002650")
    assert product is not None
    assert product.name == "ALPRAZOLAM MYLAN 0,25 mg cp B/30"


def test_ean13_check_digit() -> None:
    assert ean13_check_digit("400638133393") == "1"
    assert ean13_check_digit("340093000012") == "0"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("3400930000121,X,196,65,\n", "check digit 1, expected 0"),
        ("340093000012,X,196,65,\n", "must be 13 digits"),
        ("5400930000127,X,196,65,\n", "must start with 3400"),
        ("3400930000120,,196,65,\n", "name is empty"),
        ("3400930000120,X,1.96,65,\n", "price_cents '1.96' is not a whole number"),
        ("3400930000120,X,-1,65,\n", "price_cents -1 is negative"),
        ("3400930000120,X,196,50,\n", "rate_pct 50 is not one of"),
        ("3400930000120,X,196,65,III\n", "list 'III'"),
        ("3400930000120,X,196\n", "expected 5 fields, got 3"),
    ],
)
def test_a_bad_row_names_its_line_and_problem(tmp_path: Path, row: str, problem: str) -> None:
    path = _table(tmp_path, HEADER + GOOD.replace("3400930000120", "3400930002148") + row)
    with pytest.raises(ValueError, match=r"products\.csv:3: ") as info:
        ProductTable.load(path)
    assert problem in str(info.value)


def test_duplicates_missing_columns_and_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r":3: CIP13 3400930000120 appears twice"):
        ProductTable.load(_table(tmp_path, HEADER + GOOD + GOOD))
    with pytest.raises(ValueError, match=r":1: header lacks column\(s\) rate_pct"):
        ProductTable.load(_table(tmp_path, "cip13,name,price_cents,list\n"))
    with pytest.raises(ValueError, match="empty"):
        ProductTable.load(_table(tmp_path, "\n# nothing\n"))


def test_comments_and_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    path = _table(tmp_path, "# sandbox\n" + HEADER + "\n" + GOOD + "bad,X,1,65,\n")
    with pytest.raises(ValueError, match=r":5: CIP13 'bad'"):
        ProductTable.load(path)
    assert len(ProductTable.load(_table(tmp_path, "# sandbox\n" + HEADER + "\n" + GOOD))) == 1
