"""The product reference table: CIP13 → name, price, AMO rate and prescription list.

A deployment loads the pharmacy's table; development and the tests use the sandbox's
(:data:`DEFAULT_PRODUCTS_PATH`). The file is UTF-8 CSV with the header
``cip13,name,price_cents,rate_pct,list``; blank lines and lines starting with ``#`` are skipped.
A bad row raises :class:`ValueError` naming the file, the line and the problem.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path

from appliance.domain import Product

DEFAULT_PRODUCTS_PATH = Path(__file__).resolve().parent.parent / "sandbox" / "data" / "products.csv"
"""The sandbox's test table of about thirty common French medicines."""

COLUMNS = ("cip13", "name", "price_cents", "rate_pct", "list")
RATES = frozenset({0, 15, 30, 65, 100})
LISTS = frozenset({"", "I", "II", "stupefiant"})


def ean13_check_digit(first12: str) -> str:
    """The EAN-13 check digit of 12 digits (weights 1, 3, 1, 3… from the left)."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return str((10 - total % 10) % 10)


def cip13_problem(code: str) -> str | None:
    """Why ``code`` is not a CIP13, or None when it is one."""
    if len(code) != 13 or not code.isascii() or not code.isdigit():
        return f"CIP13 {code!r} must be 13 digits"
    if not code.startswith("3400"):
        return f"CIP13 {code} must start with 3400"
    expected = ean13_check_digit(code[:12])
    if code[12] != expected:
        return f"CIP13 {code} has check digit {code[12]}, expected {expected}"
    return None


def _int_field(row: Mapping[str, str], name: str) -> int:
    text = row[name].strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a whole number") from None


def _product(row: Mapping[str, str]) -> Product:
    cip13 = row["cip13"].strip()
    problem = cip13_problem(cip13)
    if problem:
        raise ValueError(problem)
    name = row["name"].strip()
    if not name:
        raise ValueError("name is empty")
    price = _int_field(row, "price_cents")
    if price < 0:
        raise ValueError(f"price_cents {price} is negative")
    rate = _int_field(row, "rate_pct")
    if rate not in RATES:
        raise ValueError(f"rate_pct {rate} is not one of {sorted(RATES)}")
    listing = row["list"].strip()
    if listing not in LISTS:
        raise ValueError(f"list {listing!r} is not one of I, II, stupefiant or empty")
    return Product(cip13=cip13, name=name, price_cents=price, rate_pct=rate, list=listing)


class ProductTable:
    """Products by CIP13."""

    def __init__(self, products: Mapping[str, Product] | None = None) -> None:
        self._by_cip: dict[str, Product] = dict(products or {})

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PRODUCTS_PATH) -> ProductTable:
        path = Path(path)
        with path.open(encoding="utf-8", newline="") as f:
            lines = [(n, text) for n, text in enumerate(f, start=1) if text.strip() and not text.startswith("#")]
        if not lines:
            raise ValueError(f"{path}: the product table is empty (expected header {','.join(COLUMNS)})")
        header_no, header = lines[0]
        columns = [c.strip() for c in next(csv.reader([header]))]
        missing = [c for c in COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path}:{header_no}: header lacks column(s) {', '.join(missing)}")
        products: dict[str, Product] = {}
        for line_no, text in lines[1:]:
            values = next(csv.reader([text]))
            if len(values) != len(columns):
                raise ValueError(
                    f"{path}:{line_no}: expected {len(columns)} fields, got {len(values)}"
                    " (a name containing a comma must be quoted)"
                )
            try:
                product = _product(dict(zip(columns, values, strict=True)))
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from None
            if product.cip13 in products:
                raise ValueError(f"{path}:{line_no}: CIP13 {product.cip13} appears twice")
            products[product.cip13] = product
        return cls(products)

    def get(self, cip13: str) -> Product | None:
        return self._by_cip.get(cip13)

    def __contains__(self, cip13: object) -> bool:
        return cip13 in self._by_cip

    def __len__(self) -> int:
        return len(self._by_cip)

    def __iter__(self) -> Iterator[Product]:
        return iter(self._by_cip.values())
