"""Payers' payment and rejection returns, NOEMIE-style, from files and from the sandbox's JSON.

File layout (comptoir's profile of the public NOEMIE structure): a stream of *logical entities*, each
``TTT`` (entity type, 3 digits) + ``LL`` (level, 2 digits) + fixed-width data, ended by ``@``. Line
breaks between entities, or inside one (files wrapped at a record length), are ignored. Amounts are
integer cents, right-aligned with zeros; dates ``YYYYMMDD``; text left-aligned, padded with spaces.
Files are UTF-8 or, failing that, Windows-1252.

====  ==  ==================  ===========================================================================
type  lv  entity              data (width)
====  ==  ==================  ===========================================================================
000   00  header              payer kind AMO/AMC (3), payer code (10), payer name (30), created YYYYMMDD (8),
                              file number (6)
010   01  payee               FINESS (9), pharmacy name (30)
020   02  batch               batch number (9), claims in the batch (5)
030   03  return type         PAI payment / REJ rejection (3), payment date (8), payment reference (20,
                              blank for REJ), amount of this return (11)
100   04  invoice             claim number (9), billed on (8), billed to this payer (11), paid (11)
110   05  AMO part            fund code (10), billed (11), paid (11)
120   05  AMC part            AMC number (10), billed (11), paid (11)
200   06  act                 act code (3), quantity (3), billed (11), paid (11)
300   06  rejection           rejection code (4), label (60) — of the part it follows
999   00  end                 entities before this one (6), total paid in the file (13)
====  ==  ==================  ===========================================================================

A remittance (one payment) is identified by the payer code and the payment reference: the same
reference under several batches, or in several files, is one transfer. Every sum is checked (parts
against their invoice, acts against their part, invoices against their return, the end entity against
the file); anything wrong is a :class:`PaymentsFileError` naming the file and the line where the
entity starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from appliance.payments.model import (
    LineStatus,
    Part,
    PaymentsFileError,
    Remittance,
    RemittanceLine,
    advice_for,
)

TERMINATOR = "@"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    width: int
    kind: str  # "N" digits, "D" date YYYYMMDD, "A" text


@dataclass(frozen=True, slots=True)
class Layout:
    name: str
    level: int
    fields: tuple[Field, ...]

    @property
    def width(self) -> int:
        return sum(f.width for f in self.fields)


def _layout(name: str, level: int, *fields: tuple[str, int, str]) -> Layout:
    return Layout(name, level, tuple(Field(*f) for f in fields))


LAYOUTS: dict[str, Layout] = {
    "000": _layout(
        "header",
        0,
        ("payer_kind", 3, "A"),
        ("payer_code", 10, "A"),
        ("payer_name", 30, "A"),
        ("created_on", 8, "D"),
        ("file_number", 6, "N"),
    ),
    "010": _layout("payee", 1, ("finess", 9, "A"), ("payee_name", 30, "A")),
    "020": _layout("batch", 2, ("batch_number", 9, "N"), ("claims", 5, "N")),
    "030": _layout(
        "return type",
        3,
        ("return_type", 3, "A"),
        ("paid_on", 8, "D"),
        ("payment_reference", 20, "A"),
        ("amount", 11, "N"),
    ),
    "100": _layout(
        "invoice", 4, ("claim_number", 9, "N"), ("billed_on", 8, "D"), ("billed", 11, "N"), ("paid", 11, "N")
    ),
    "110": _layout("AMO part", 5, ("payer_code", 10, "A"), ("billed", 11, "N"), ("paid", 11, "N")),
    "120": _layout("AMC part", 5, ("payer_code", 10, "A"), ("billed", 11, "N"), ("paid", 11, "N")),
    "200": _layout("act", 6, ("act_code", 3, "A"), ("quantity", 3, "N"), ("billed", 11, "N"), ("paid", 11, "N")),
    "300": _layout("rejection", 6, ("code", 4, "A"), ("label", 60, "A")),
    "999": _layout("end", 0, ("entities", 6, "N"), ("total_paid", 13, "N")),
}
RETURN_TYPES = ("PAI", "REJ")
PAYER_KINDS = ("AMO", "AMC")


def format_entity(entity_type: str, **values: object) -> str:
    """One entity as it is written, ``@`` included (used by the sandbox generator and the tests)."""
    layout = LAYOUTS[entity_type]
    data = []
    for f in layout.fields:
        value = values.pop(f.name)
        if f.kind == "N":
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{layout.name}.{f.name}: a non-negative integer, not {value!r}")
            text = str(value).rjust(f.width, "0")
        elif f.kind == "D":
            if not isinstance(value, date):
                raise ValueError(f"{layout.name}.{f.name}: a date, not {value!r}")
            text = value.strftime("%Y%m%d")
        else:
            text = str(value).ljust(f.width)
        if len(text) != f.width:
            raise ValueError(f"{layout.name}.{f.name}: {value!r} does not fit in {f.width} characters")
        data.append(text)
    if values:
        raise ValueError(f"{layout.name}: unknown fields {sorted(values)}")
    return f"{entity_type}{layout.level:02d}{''.join(data)}{TERMINATOR}"


@dataclass(frozen=True, slots=True)
class Entity:
    type: str
    line: int
    values: dict[str, Any]

    @property
    def name(self) -> str:
        return LAYOUTS[self.type].name


def decode_text(raw: bytes) -> str:
    """UTF-8 (a BOM is dropped), else Windows-1252: the encodings payers' and banks' files come in."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def split_entities(text: str, source: str) -> list[Entity]:
    """The entities of a file, each with the line it starts on, its fields checked and converted."""
    entities: list[Entity] = []
    line = 1
    pos = 0
    while pos < len(text):
        end = text.find(TERMINATOR, pos)
        chunk = text[pos:] if end < 0 else text[pos:end]
        lead = len(chunk) - len(chunk.lstrip())
        start_line = line + chunk.count("\n", 0, lead)
        line += chunk.count("\n")
        pos = len(text) if end < 0 else end + 1
        body = chunk.lstrip().replace("\r", "").replace("\n", "")
        if not body.strip():
            if end < 0:
                break
            raise PaymentsFileError(source, start_line, "empty entity ('@' with nothing before it)")
        if end < 0:
            raise PaymentsFileError(
                source, start_line, f"entity {body[:3]!r} is not ended by '@' (file truncated?): {body[:40]!r}"
            )
        entities.append(_entity(body, start_line, source))
    return entities


def _entity(body: str, line: int, source: str) -> Entity:
    entity_type, level_text, data = body[:3], body[3:5], body[5:]
    layout = LAYOUTS.get(entity_type)
    if layout is None:
        known = ", ".join(f"{t} {lay.name}" for t, lay in LAYOUTS.items())
        raise PaymentsFileError(source, line, f"unknown entity type {entity_type!r} (known: {known})")
    if level_text != f"{layout.level:02d}":
        raise PaymentsFileError(
            source, line, f"{layout.name} entity {entity_type} must be at level {layout.level:02d}, not {level_text!r}"
        )
    if len(data) != layout.width:
        raise PaymentsFileError(
            source,
            line,
            f"{layout.name} entity {entity_type} has {len(data)} characters of data, expected {layout.width}",
        )
    values: dict[str, Any] = {}
    offset = 0
    for f in layout.fields:
        raw = data[offset : offset + f.width]
        column = 6 + offset
        offset += f.width
        if f.kind == "N":
            if not raw.isascii() or not raw.isdigit():
                raise PaymentsFileError(
                    source, line, f"{layout.name} {f.name} (column {column}) must be {f.width} digits, not {raw!r}"
                )
            values[f.name] = int(raw)
        elif f.kind == "D":
            try:
                if not (raw.isascii() and raw.isdigit()):
                    raise ValueError(raw)
                values[f.name] = date(int(raw[:4]), int(raw[4:6]), int(raw[6:]))
            except ValueError:
                raise PaymentsFileError(
                    source, line, f"{layout.name} {f.name} (column {column}) is not a date YYYYMMDD: {raw!r}"
                ) from None
        else:
            values[f.name] = raw.strip()
    return Entity(entity_type, line, values)


@dataclass(slots=True)
class _Part:
    entity: Entity
    part: Part
    acts_billed: int = 0
    acts_paid: int = 0
    acts: int = 0
    rejection: Entity | None = None


@dataclass(slots=True)
class _Invoice:
    entity: Entity
    parts: list[_Part]


def parse_noemie(text: str, source: str) -> list[Remittance]:
    """Every remittance of one NOEMIE-style file (see the module docstring for the layout)."""
    entities = split_entities(text, source)
    if not entities:
        raise PaymentsFileError(source, None, "empty file: no entity found")
    header = entities[0]
    if header.type != "000":
        raise PaymentsFileError(source, header.line, f"the file must start with a header (000), not a {header.name}")
    if header.values["payer_kind"] not in PAYER_KINDS:
        raise PaymentsFileError(
            source, header.line, f"payer kind must be AMO or AMC, not {header.values['payer_kind']!r}"
        )
    payer = str(header.values["payer_code"]) or str(header.values["payer_name"])
    if not payer:
        raise PaymentsFileError(source, header.line, "the header names no payer (code and name blank)")
    last = entities[-1]
    if last.type != "999":
        raise PaymentsFileError(source, last.line, f"the file must end with an end entity (999), not a {last.name}")

    lines: dict[str, list[RemittanceLine]] = {}
    paid_on: dict[str, date] = {}
    references: dict[str, str] = {}
    payee_seen = False
    batch: Entity | None = None
    ret: Entity | None = None
    invoice: _Invoice | None = None
    return_paid = 0
    file_paid = 0

    def close_invoice() -> None:
        nonlocal invoice, return_paid
        if invoice is None or ret is None or batch is None:
            return
        inv = invoice.entity
        _close_part(invoice, source)
        if not invoice.parts:
            raise PaymentsFileError(source, inv.line, f"invoice {inv.values['claim_number']} has no AMO or AMC part")
        paid = sum(p.entity.values["paid"] for p in invoice.parts)
        billed = sum(p.entity.values["billed"] for p in invoice.parts)
        if paid != inv.values["paid"] or billed != inv.values["billed"]:
            raise PaymentsFileError(
                source,
                inv.line,
                f"invoice {inv.values['claim_number']}: billed {inv.values['billed']} / paid {inv.values['paid']}"
                f" but its parts add up to {billed} / {paid}",
            )
        return_paid += paid
        rid = _remittance_id(payer, ret, header, batch)
        for p in invoice.parts:
            lines.setdefault(rid, []).append(_line(rid, inv, p, str(batch.values["batch_number"]), source))
        invoice = None

    def close_return() -> None:
        nonlocal ret, return_paid, file_paid
        close_invoice()
        if ret is None:
            return
        if return_paid != ret.values["amount"]:
            raise PaymentsFileError(
                source, ret.line, f"return amount {ret.values['amount']} but its invoices were paid {return_paid}"
            )
        file_paid += return_paid
        return_paid = 0
        ret = None

    for entity in entities[1:-1]:
        kind = entity.type
        if kind == "000":
            raise PaymentsFileError(source, entity.line, "a second header (000): one file, one payer")
        if kind == "999":
            raise PaymentsFileError(source, entity.line, "an end entity (999) before the end of the file")
        if kind == "010":
            if payee_seen:
                raise PaymentsFileError(source, entity.line, "a second payee (010)")
            payee_seen = True
            continue
        if not payee_seen:
            raise PaymentsFileError(source, entity.line, f"a {entity.name} before the payee (010)")
        if kind == "020":
            close_return()
            batch = entity
        elif kind == "030":
            if batch is None:
                raise PaymentsFileError(source, entity.line, "a return type (030) outside any batch (020)")
            close_return()
            rtype = entity.values["return_type"]
            if rtype not in RETURN_TYPES:
                raise PaymentsFileError(source, entity.line, f"return type must be PAI or REJ, not {rtype!r}")
            if rtype == "PAI" and not entity.values["payment_reference"]:
                raise PaymentsFileError(source, entity.line, "a payment return (PAI) without a payment reference")
            ret = entity
            rid = _remittance_id(payer, ret, header, batch)
            if rid in paid_on and paid_on[rid] != entity.values["paid_on"]:
                raise PaymentsFileError(
                    source,
                    entity.line,
                    f"payment reference {entity.values['payment_reference']!r} already used with another date",
                )
            paid_on[rid] = entity.values["paid_on"]
            references[rid] = str(entity.values["payment_reference"])
        elif kind == "100":
            if ret is None:
                raise PaymentsFileError(source, entity.line, "an invoice (100) outside any return type (030)")
            close_invoice()
            invoice = _Invoice(entity, [])
        elif kind in ("110", "120"):
            if invoice is None:
                raise PaymentsFileError(source, entity.line, f"an {entity.name} outside any invoice (100)")
            _close_part(invoice, source)
            if entity.values["paid"] > entity.values["billed"]:
                raise PaymentsFileError(source, entity.line, f"{entity.name} paid more than billed")
            if ret is not None and ret.values["return_type"] == "REJ" and entity.values["paid"]:
                raise PaymentsFileError(source, entity.line, f"{entity.name} paid in a rejection return (REJ)")
            invoice.parts.append(_Part(entity, Part.AMO if kind == "110" else Part.AMC))
        elif kind in ("200", "300"):
            if invoice is None or not invoice.parts:
                raise PaymentsFileError(source, entity.line, f"a {entity.name} outside any AMO or AMC part")
            current = invoice.parts[-1]
            if kind == "200":
                if current.rejection is not None:
                    raise PaymentsFileError(source, entity.line, "an act after the part's rejection (300)")
                current.acts += 1
                current.acts_billed += entity.values["billed"]
                current.acts_paid += entity.values["paid"]
            elif current.rejection is not None:
                raise PaymentsFileError(source, entity.line, "a second rejection (300) for the same part")
            else:
                current.rejection = entity
    close_return()
    if batch is None:
        raise PaymentsFileError(source, last.line, "no batch (020) in the file")
    if last.values["entities"] != len(entities) - 1:
        raise PaymentsFileError(
            source,
            last.line,
            f"the end entity counts {last.values['entities']} entities, the file has {len(entities) - 1}",
        )
    if last.values["total_paid"] != file_paid:
        raise PaymentsFileError(
            source,
            last.line,
            f"the end entity says {last.values['total_paid']} paid, the returns add up to {file_paid}",
        )
    result = []
    for rid, its_lines in lines.items():
        result.append(
            Remittance(
                remittance_id=rid,
                payer=payer,
                payer_name=str(header.values["payer_name"]),
                paid_on=paid_on[rid],
                payment_reference=references[rid],
                lines=tuple(its_lines),
                source=source,
            )
        )
    return result


def _close_part(invoice: _Invoice, source: str) -> None:
    if not invoice.parts:
        return
    p = invoice.parts[-1]
    if p.acts and (p.acts_billed != p.entity.values["billed"] or p.acts_paid != p.entity.values["paid"]):
        raise PaymentsFileError(
            source,
            p.entity.line,
            f"{p.entity.name} billed {p.entity.values['billed']} / paid {p.entity.values['paid']}"
            f" but its acts add up to {p.acts_billed} / {p.acts_paid}",
        )


def _remittance_id(payer: str, ret: Entity, header: Entity, batch: Entity) -> str:
    if ret.values["return_type"] == "PAI":
        return f"{payer}:{ret.values['payment_reference']}"
    created: date = header.values["created_on"]
    return f"{payer}:REJ-{created:%Y%m%d}-{header.values['file_number']:06d}-{batch.values['batch_number']}"


def _line(rid: str, invoice: Entity, p: _Part, batch_number: str, source: str) -> RemittanceLine:
    billed = int(p.entity.values["billed"])
    paid = int(p.entity.values["paid"])
    status = LineStatus.PAID if paid == billed else LineStatus.REJECTED if paid == 0 else LineStatus.PARTIAL
    code = label = action = ""
    if p.rejection is not None:
        code = str(p.rejection.values["code"])
        advice = advice_for(code, str(p.rejection.values["label"]))
        label, action = advice.reason, advice.action
        if status is LineStatus.PAID:
            raise PaymentsFileError(source, p.rejection.line, "a rejection (300) for a part paid in full")
    return RemittanceLine(
        remittance_id=rid,
        claim_number=int(invoice.values["claim_number"]),
        part=p.part,
        paid_cents=paid,
        status=status,
        billed_cents=billed,
        batch_number=batch_number.lstrip("0") or "0",
        payer_code=str(p.entity.values["payer_code"]),
        reason_code=code,
        reason=label,
        action=action,
        source=f"{source}:{p.entity.line}",
    )


# ---------------------------------------------------------------------------------------------- sandbox JSON


def parse_sandbox_remittances(remittances: Sequence[Any], source: str = "sandbox") -> list[Remittance]:
    """The sandbox's ``GET /claims/remittances`` answer (its ``remittances`` list, as
    :meth:`sync.teleservices_http.HttpTeleservices.remittances` returns it)."""
    result = []
    for index, item in enumerate(remittances, start=1):
        where = f"remittance #{index}"
        if not isinstance(item, Mapping):
            raise PaymentsFileError(source, None, f"{where} is not a JSON object")
        rid_raw = _json_str(item, "remittance_id", source, where)
        where = f"remittance #{index} ({rid_raw})"
        payer = _json_str(item, "payer", source, where)
        reference = _json_str(item, "payment_reference", source, where)
        try:
            paid_on = date.fromisoformat(_json_str(item, "paid_on", source, where))
        except ValueError:
            raise PaymentsFileError(source, None, f"{where}: paid_on is not a date YYYY-MM-DD") from None
        claims = item.get("claims")
        if not isinstance(claims, list):
            raise PaymentsFileError(source, None, f"{where}: 'claims' must be a list")
        rid = f"{payer}:{reference}"
        part = Part.AMO if payer == "AMO" else Part.AMC
        lines = []
        for n, claim in enumerate(claims, start=1):
            at = f"{where}, claim #{n}"
            if not isinstance(claim, Mapping):
                raise PaymentsFileError(source, None, f"{at} is not a JSON object")
            number_text = _json_str(claim, "claim_number", source, at)
            if not number_text.isdigit():
                raise PaymentsFileError(source, None, f"{at}: claim_number must be digits, not {number_text!r}")
            paid = claim.get("paid_cents")
            if not isinstance(paid, int) or isinstance(paid, bool) or paid < 0:
                raise PaymentsFileError(source, None, f"{at}: paid_cents must be a non-negative integer of cents")
            status_text = claim.get("status")
            if status_text not in ("paid", "rejected"):
                raise PaymentsFileError(source, None, f"{at}: status must be 'paid' or 'rejected', not {status_text!r}")
            reason = action = ""
            if status_text == "rejected":
                advice = advice_for("", str(claim.get("reason") or ""), str(claim.get("action") or ""))
                reason, action = advice.reason, advice.action
            lines.append(
                RemittanceLine(
                    remittance_id=rid,
                    claim_number=int(number_text),
                    part=part,
                    paid_cents=paid,
                    status=LineStatus.PAID if status_text == "paid" else LineStatus.REJECTED,
                    batch_number=str(item.get("batch_number") or ""),
                    payer_code="" if part is Part.AMO else payer,
                    reason=reason,
                    action=action,
                    source=f"{source}:{rid_raw}",
                )
            )
        total = item.get("total_paid_cents")
        if isinstance(total, int) and total != sum(line.paid_cents for line in lines):
            raise PaymentsFileError(source, None, f"{where}: total_paid_cents {total} ≠ the sum of its claims")
        result.append(Remittance(rid, payer, payer, paid_on, reference, tuple(lines), f"{source}:{rid_raw}"))
    return result


def _json_str(item: Mapping[str, Any], name: str, source: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise PaymentsFileError(source, None, f"{where}: {name!r} is missing or not a string")
    return value


def parse_remittance_file(path: Path) -> list[Remittance]:
    """One file: ``.json`` is the sandbox's answer (a list, or ``{"remittances": [...]}``), anything else
    a NOEMIE-style file."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PaymentsFileError(source, None, f"cannot read the file: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(decode_text(raw))
        except json.JSONDecodeError as exc:
            raise PaymentsFileError(source, exc.lineno, f"not valid JSON: {exc.msg}") from None
        if isinstance(data, Mapping):
            data = data.get("remittances")
        if not isinstance(data, list):
            raise PaymentsFileError(source, None, "expected a list of remittances or {'remittances': [...]}")
        return parse_sandbox_remittances(data, source)
    return parse_noemie(decode_text(raw), source)


def merge_remittances(found: Iterable[Remittance]) -> list[Remittance]:
    """One remittance per id: lines of a payment spread over several files (or batches) are put together;
    the same line read twice (the same file imported again, or copied) counts once."""
    merged: dict[str, Remittance] = {}
    for remittance in found:
        existing = merged.get(remittance.remittance_id)
        if existing is None:
            merged[remittance.remittance_id] = replace(remittance, lines=_unique_lines(remittance.lines))
            continue
        if existing.paid_on != remittance.paid_on:
            raise PaymentsFileError(
                remittance.source,
                None,
                f"payment {remittance.payment_reference!r} of {remittance.payer} is dated {remittance.paid_on}"
                f" here and {existing.paid_on} in {existing.source}",
            )
        merged[remittance.remittance_id] = replace(existing, lines=_unique_lines(existing.lines + remittance.lines))
    return sorted(merged.values(), key=lambda r: (r.paid_on, r.remittance_id))


def _unique_lines(lines: Sequence[RemittanceLine]) -> tuple[RemittanceLine, ...]:
    seen: set[tuple[object, ...]] = set()
    kept = []
    for line in lines:
        key = (line.claim_number, line.part, line.paid_cents, line.billed_cents, line.status, line.reason_code)
        if key in seen:
            continue
        seen.add(key)
        kept.append(line)
    return tuple(kept)


def load_remittances(directory: Path) -> list[Remittance]:
    """Every remittance file of a directory (not hidden, not recursive), merged by payment."""
    if not directory.is_dir():
        raise PaymentsFileError(str(directory), None, "not a directory of remittance files")
    found: list[Remittance] = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            found.extend(parse_remittance_file(path))
    return merge_remittances(found)
