"""NOEMIE PS files for the tests, written from the published description (sesamviewer's
``data/noemie-ps.xml``: entity, zone positions 1-based and inclusive, ``@`` at the published length),
independently of :mod:`appliance.payments.noemie`: a parser that agrees with its own writer but not with
the layout fails these tests.

Physical layout: 128-byte records; record 1 the 000 header, the last the 999 trailer; the records in
between carry the entity stream in positions 2-128, position 1 being ``1`` on the last of them (padded
with spaces) and ``0`` on the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

RECORD = 128

LENGTHS = {
    "020": 21, "040": 21, "070": 12, "071": 86, "080": 15, "081": 22, "100": 15, "102": 40, "103": 152, "110": 88,
    "120": 57, "150": 8, "160": 23, "198": 24, "199": 49, "210": 118, "250": 47, "261": 19, "262": 134, "290": 98,
    "294": 153, "295": 135, "990": 43,
}  # fmt: skip
"""Published length of each entity (the position of its ``@``)."""


def put(zone: list[str], start: int, end: int, value: str | int) -> None:
    """Numbers right-aligned with zeros, text left-aligned with spaces, at published positions."""
    width = end - start + 1
    text = str(value).rjust(width, "0") if isinstance(value, int) else value.ljust(width)
    if len(text) != width:
        raise AssertionError(f"{value!r} does not fit positions {start}-{end}")
    zone[start - 1 : end] = list(text)


def yymmdd(day: date) -> str:
    return day.strftime("%y%m%d")


def entity(kind: str, level: str, zones: dict[tuple[int, int], str | int], length: int | None = None) -> str:
    size = LENGTHS[kind] if length is None else length
    zone = [" "] * size
    put(zone, 1, 3, kind)
    put(zone, 4, 5, level)
    for (start, end), value in zones.items():
        put(zone, start, end, value)
    zone[size - 1] = "@"
    return "".join(zone)


def e020(number: int) -> str:
    return entity("020", "01", {(6, 20): number})


def e040(number: int) -> str:
    return entity("040", "02", {(6, 20): number})


def e070(day: date) -> str:
    return entity("070", "02", {(6, 11): yymmdd(day)})


def e071(day: date, label1: str, label2: str = "", payer: str = "", level: str = "02") -> str:
    return entity("071", level, {(6, 11): yymmdd(day), (12, 43): label1, (44, 75): label2, (76, 85): payer})


def e080(day: date, lot: int) -> str:
    return entity("080", "03", {(6, 11): yymmdd(day), (12, 14): lot})


def e081(code: str) -> str:
    return entity("081", "02", {(6, 7): code})


def e102(invoice: str, lot: str = "", lot_day: date | None = None, kind: str = "F", billed: date | None = None) -> str:
    zones: dict[tuple[int, int], str | int] = {(6, 14): invoice, (21, 23): lot, (30, 30): kind}
    if lot_day:
        zones[(24, 29)] = yymmdd(lot_day)
    if billed:
        zones[(31, 36)] = yymmdd(billed)
    return entity("102", "04", zones)


def e103(nir: str = "1800175123456", key: int = 97) -> str:
    return entity("103", "05", {(6, 18): nir, (19, 20): key, (101, 106): "800101", (107, 107): 1})


def e198(asked: int, state: str, paid: int, sign: str = "P") -> str:
    return entity("198", "05", {(6, 13): asked, (14, 14): state, (15, 22): paid, (23, 23): sign})


def e199(asked: int, state: str, paid: int, amc: int, sign: str = "P") -> str:
    return entity("199", "05", {(6, 13): asked, (14, 14): state, (15, 22): paid, (23, 23): sign, (24, 33): amc})


def e210(line: int, nature: str, amount: int, day: date) -> str:
    """An act: every numeric zone of 210 (all mandatory) filled."""
    d = yymmdd(day)
    zones: dict[tuple[int, int], str | int] = {
        (6, 7): line, (8, 9): 0, (10, 10): "0", (11, 12): 0, (13, 15): 0, (16, 21): d, (22, 27): d, (28, 33): d,
        (34, 41): amount, (42, 49): amount, (50, 52): 100, (53, 60): amount, (61, 61): "P", (62, 64): nature,
        (67, 69): 1, (70, 74): 100, (75, 77): 1, (78, 85): amount, (88, 90): 0, (91, 98): 0, (99, 101): 0,
        (102, 109): 0, (110, 117): 0,
    }  # fmt: skip
    return entity("210", "05", zones)


def e250(
    line: int, debt: str, recorded: date, nature: str, operation: str, amount: int, sign: str, balance: int | None
) -> str:
    zones: dict[tuple[int, int], str | int] = {
        (6, 7): line, (8, 17): debt, (18, 23): yymmdd(recorded), (24, 26): nature, (27, 29): operation,
        (30, 37): amount, (38, 38): sign,
    }  # fmt: skip
    if balance is not None:
        zones[(39, 46)] = balance
    return entity("250", "03", zones)


def e261(code: int, amount: int) -> str:
    return entity("261", "03", {(6, 10): code, (11, 18): amount})


def e290(line: int, code: str, label: str) -> str:
    return entity("290", "05", {(6, 7): line, (8, 17): code, (18, 97): label})


def e294(code: str, label: str, part: str, level: str = "F") -> str:
    return entity("294", "05", {(6, 9): code, (10, 95): label, (96, 96): level, (97, 97): part})


def e990(count: int, total: int, sign: str = "P") -> str:
    return entity("990", "99", {(23, 30): count, (31, 41): total, (42, 42): sign})


@dataclass(slots=True)
class Header:
    emitter_type: str = "CP"
    emitter: int = 751
    recipient_type: str = "TP"
    recipient: str = "750000001"
    file_id: str = "000007"
    created: date = date(2026, 3, 2)
    norm: str = "576"
    currency: str = "U"
    length: int = RECORD
    extra: dict[tuple[int, int], str | int] = field(default_factory=dict)

    def record(self) -> str:
        zone = [" "] * RECORD
        for (start, end), value in {
            (1, 3): "000", (4, 5): self.emitter_type, (6, 19): self.emitter, (26, 27): self.recipient_type,
            (28, 41): self.recipient, (50, 55): self.file_id, (56, 61): yymmdd(self.created), (62, 65): self.norm,
            (70, 70): self.currency, (71, 71): "T", (83, 85): self.length, **self.extra,
        }.items():  # fmt: skip
            put(zone, start, end, value)
        return "".join(zone)

    def trailer(self, records: int, lots: int, total: int, sign: str) -> str:
        zone = [" "] * RECORD
        for (start, end), value in {
            (1, 3): "999", (4, 5): self.emitter_type, (6, 19): self.emitter, (26, 27): self.recipient_type,
            (28, 41): self.recipient, (50, 55): self.file_id, (56, 63): records, (83, 85): lots, (86, 96): total,
            (97, 97): sign,
        }.items():  # fmt: skip
            put(zone, start, end, value)
        return "".join(zone)


def data_records(entities: list[str]) -> list[str]:
    stream = "".join(entities)
    chunks = [stream[i : i + RECORD - 1] for i in range(0, len(stream), RECORD - 1)]
    return ["0" + c for c in chunks[:-1]] + [("1" + chunks[-1]).ljust(RECORD)]


def build(
    entities: list[str],
    *,
    lots: int,
    total: int,
    sign: str = "P",
    header: Header | None = None,
    records: int | None = None,
    newline: str = "",
) -> str:
    """The whole file; ``records`` overrides the trailer's count (to test its control)."""
    head = header or Header()
    data = data_records(entities)
    count = len(data) + 2 if records is None else records
    return newline.join([head.record(), *data, head.trailer(count, lots, total, sign)]) + newline


def where(entities: list[str], index: int, position: int = 1) -> tuple[int, int]:
    """(line, column) of ``position`` (1-based, as published) of the ``index``-th entity."""
    offset = sum(len(e) for e in entities[:index]) + position - 1
    return 2 + offset // (RECORD - 1), 2 + offset % (RECORD - 1)


def split(text: str) -> tuple[str, list[str], str, list[str]]:
    """Header, data records, trailer and the entities of a file, read with the published lengths only
    (to check that a file someone else wrote follows the layout)."""
    records = text.splitlines() if "\n" in text else [text[i : i + RECORD] for i in range(0, len(text), RECORD)]
    assert all(len(r) == RECORD for r in records), {len(r) for r in records}
    data = records[1:-1]
    assert all(r[0] == "0" for r in data[:-1]) and data[-1][0] == "1"
    stream = "".join(r[1:] for r in data[:-1]) + data[-1][1:].rstrip(" ")
    entities = []
    pos = 0
    while pos < len(stream):
        size = LENGTHS[stream[pos : pos + 3]]
        assert stream[pos + size - 1] == "@", stream[pos : pos + size]
        entities.append(stream[pos : pos + size])
        pos += size
    return records[0], data, records[-1], entities
