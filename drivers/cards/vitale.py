"""Reading a carte Vitale 2 over PC/SC with its publicly documented structure.

The part of the card readable without any key, as public readers (cardpeek's ``vitale_2.lua`` among them)
read it:

1. ``SELECT`` the master file ``3F00``: ``00 A4 00 00 02 3F 00``.
2. ``READ BINARY`` short file 2 of the MF: ``00 B0 82 00 00``. The identity file: one BER-TLV template
   ``65`` per beneficiary, in card order, the card holder (ouvrant droit) first, holding ``80`` name,
   ``81`` first name, ``82`` birth date ``YYYYMMDD`` (ASCII). This driver also reads an optional ``83``
   birth rank (rang de naissance, one ASCII digit): an assumption, the public descriptions do not show
   where the card keeps it.
3. ``SELECT`` the VITALE application by its AID ``D2 50 00 00 02 56 49 54 41 4C 45``.
4. ``READ BINARY`` short file 2 of the application: one ``65`` template per beneficiary, same order, with
   ``93`` the NIR (15 ASCII characters, key included; a child without a NIR of their own carries the
   holder's) and ``90`` the nationality; and a ``66`` template whose ``80`` is the date the card's data
   starts from (``YYYYMMDD``), given to the workflow as ``data_on``.

Files longer than 256 bytes are read in 256-byte steps (READ BINARY with an offset).

Every NIR key is checked (:func:`appliance.codes.nir.parse_nir`, Corsican 2A/2B included). The birth rank
is the card's when it has one, else the order among beneficiaries sharing a NIR and a birth date (twins on
a parent's card: 1, 2). Sex comes from the first digit of a beneficiary's own NIR, and stays empty for a
child who carries the holder's (INSi returns it). The AMO rights are in files the public structure does not
describe: they are not read, so the workflow asks ADRi.

A card is returned whole or not at all: a card pulled out mid-read raises
:class:`~appliance.cards.CardRemovedError` ("Carte retirée pendant la lecture, réinsérez-la"), anything
inconsistent raises :class:`~appliance.cards.CardReadError`; no NIR or name ever goes to the logs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

from appliance.cards import CardReadError, VitaleCard
from appliance.codes.errors import NirError
from appliance.codes.nir import parse_nir
from appliance.domain import Beneficiary, Traits
from drivers.cards.apdu import Tlv, expect_ok, iter_tlv, read_whole_file, select_aid, select_mf
from drivers.cards.pcsc import CardOpener, open_card

VITALE_AID = bytes.fromhex("D250000002564954414C45")
IDENTITY_SFI = 2
VITALE_SFI = 2
MAX_BENEFICIARIES = 16

TAG_PERSON = 0x65
TAG_CARD = 0x66
TAG_NAME = 0x80
TAG_FIRST_NAME = 0x81
TAG_BIRTH_DATE = 0x82
TAG_RANK = 0x83
TAG_NATIONALITY = 0x90
TAG_NIR = 0x93
TAG_CARD_DATE = 0x80

_UNREADABLE = "Carte Vitale illisible : utilisez l'appli carte Vitale ou la recherche"


@dataclass(frozen=True, slots=True)
class _Person:
    name: str
    first_name: str
    birth_date: date
    rank: int | None


def _text(value: bytes | None, what: str, index: int) -> str:
    if value is None:
        raise CardReadError(_UNREADABLE, f"beneficiary #{index}: no {what}")
    return value.decode("latin-1").strip()


def _day(value: bytes, what: str) -> date:
    text = value.decode("latin-1").strip()
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise CardReadError(_UNREADABLE, f"{what} is not a YYYYMMDD date") from None


def _people(identity: bytes) -> list[_Person]:
    people = []
    for index, record in enumerate(t for t in iter_tlv(identity) if t.tag == TAG_PERSON):
        birth = record.find(TAG_BIRTH_DATE)
        if birth is None:
            raise CardReadError(_UNREADABLE, f"beneficiary #{index}: no birth date")
        rank_raw = record.find(TAG_RANK)
        rank = None
        if rank_raw is not None:
            rank_text = rank_raw.decode("latin-1").strip()
            if not rank_text.isdigit() or not 1 <= int(rank_text) <= 9:
                raise CardReadError(_UNREADABLE, f"beneficiary #{index}: birth rank is not 1 to 9")
            rank = int(rank_text)
        people.append(
            _Person(
                name=_text(record.find(TAG_NAME), "name", index).upper(),
                first_name=_text(record.find(TAG_FIRST_NAME), "first name", index).upper(),
                birth_date=_day(birth, f"beneficiary #{index} birth date"),
                rank=rank,
            )
        )
    return people


def _nirs(records: list[Tlv]) -> list[str]:
    nirs = []
    for index, record in enumerate(r for r in records if r.tag == TAG_PERSON):
        raw = record.find(TAG_NIR)
        if raw is None:
            raise CardReadError(_UNREADABLE, f"beneficiary #{index}: no NIR")
        try:
            nirs.append(parse_nir(raw.decode("latin-1")).number)
        except NirError as exc:
            # The reason only (key mismatch, shape): never the number itself.
            raise CardReadError(_UNREADABLE, f"beneficiary #{index}: {type(exc).__name__}") from None
    return nirs


def _sex(nir: str) -> str:
    return "M" if nir[0] in "137" else "F"


def parse_vitale(identity: bytes, vitale: bytes) -> VitaleCard:
    """The beneficiaries from the MF identity file and the VITALE application file (pure: tests and vendors
    reading the same files through their middleware use it too)."""
    people = _people(identity)
    records = list(iter_tlv(vitale))
    nirs = _nirs(records)
    if not people:
        raise CardReadError("Carte Vitale sans bénéficiaire lisible", "no 65 template in the identity file")
    if len(people) > MAX_BENEFICIARIES:
        raise CardReadError(_UNREADABLE, f"{len(people)} beneficiaries")
    if len(nirs) != len(people):
        raise CardReadError(_UNREADABLE, f"{len(people)} identities but {len(nirs)} NIRs")
    data_on = None
    for record in records:
        if record.tag == TAG_CARD and (raw := record.find(TAG_CARD_DATE)) is not None:
            data_on = _day(raw, "card data date")
    holder_nir = nirs[0]
    seen: Counter[tuple[str, date]] = Counter()
    beneficiaries = []
    for index, (person, nir) in enumerate(zip(people, nirs, strict=True)):
        seen[(nir, person.birth_date)] += 1
        rank = person.rank if person.rank is not None else seen[(nir, person.birth_date)]
        own_nir = index == 0 or nir != holder_nir
        traits = Traits(
            birth_name=person.name,
            first_names=person.first_name,
            sex=_sex(nir) if own_nir else "",
            birth_date=person.birth_date,
        )
        beneficiaries.append(Beneficiary(nir=nir, rank=rank, traits=traits, holder_nir=holder_nir))
    return VitaleCard(beneficiaries=tuple(beneficiaries), data_on=data_on)


class PcscVitaleReader:
    """:class:`~appliance.cards.VitaleCardReader` over PC/SC, the public Vitale 2 structure.

    Both files are read inside one PC/SC transaction, then parsed: the card is read whole before anything is
    returned, so a removal at any APDU leaves nothing behind.
    """

    def __init__(self, opener: CardOpener = open_card) -> None:
        self._opener = opener

    def read_vitale(self, reader: str) -> VitaleCard:
        with self._opener(reader) as channel:
            expect_ok(channel.transmit(select_mf()), "SELECT MF")
            identity = read_whole_file(channel, IDENTITY_SFI, "MF identity file")
            expect_ok(channel.transmit(select_aid(VITALE_AID)), "SELECT VITALE")
            vitale = read_whole_file(channel, VITALE_SFI, "VITALE file")
        return parse_vitale(identity, vitale)
