"""Smart-card ports: what the core expects from the card reader, whoever implements it.

Two cards meet at the counter. The patient's carte Vitale carries the beneficiaries the identify step offers;
the pharmacist's CPS authenticates them (PIN, RPPS number, name) and its removal must lock the pharmacist
panel. Real deployments read both through the card vendors' licensed middleware, so the core only sees the
protocols below; ``drivers/cards`` implements them over PC/SC with the publicly documented Vitale 2 structure
and a documented CPS *test* applet, and a licensed component replaces them behind the same ports.

No pyscard here (DESIGN §2): plain dataclasses, protocols and exceptions. Every exception carries a short
French ``message`` the kiosk shows as is; the code and the logs stay in English.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Protocol

from appliance.domain import AmoRights, Beneficiary
from appliance.workflow.events import CardInserted


class CardKind(StrEnum):
    """What a card in a reader is, as told by its ATR (the supervisor's classification is configurable)."""

    VITALE = "vitale"
    CPS = "cps"
    UNKNOWN = "unknown"


class AbsenceCause(StrEnum):
    """Why a card stopped being seen: the kiosk says "carte retirée" only for the first one."""

    REMOVED = "removed"
    """The reader reported the card gone."""
    READER_LOST = "reader-lost"
    """The reader itself went away (unplugged) with the card in it."""
    SERVICE_LOST = "service-lost"
    """The PC/SC service stopped: the card may still be there, but nothing proves it is the same card."""


@dataclass(frozen=True, slots=True)
class CardPresent:
    """A card is in ``reader`` (reported at start for a card already there, and on every insertion)."""

    reader: str
    atr: bytes
    kind: CardKind


@dataclass(frozen=True, slots=True)
class CardAbsent:
    """The card that was in ``reader`` is no longer seen."""

    reader: str
    kind: CardKind
    """Kind of the card that left."""
    cause: AbsenceCause = AbsenceCause.REMOVED


CardPresence = CardPresent | CardAbsent
CardPresenceSink = Callable[[CardPresence], None]
"""Where the reader supervisor reports cards. Called from its thread, in the order things happened."""


# ---------------------------------------------------------------------------------------------------------
# Errors, with the sentence the kiosk shows
# ---------------------------------------------------------------------------------------------------------


class CardError(Exception):
    """A card could not be used; ``message`` is French, for the person at the counter."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(f"{message} ({detail})" if detail else message)
        self.message = message
        self.detail = detail
        """English technical detail for the logs (never patient data)."""


class CardRemovedError(CardError):
    """The card left the reader before everything was read: nothing of it is returned."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("Carte retirée pendant la lecture, réinsérez-la", detail)


class CardReadError(CardError):
    """The card answered, but not as the structure says (wrong card, damaged data, bad NIR key...)."""


class ReaderUnavailable(CardError):
    """No PC/SC service or no such reader: the kiosk offers the other ways (apCV, search)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("Lecteur de carte indisponible", detail)


class WrongPin(CardError):
    """The CPS refused the PIN; ``tries_left`` more attempts before it blocks."""

    def __init__(self, tries_left: int) -> None:
        super().__init__(f"Code CPS incorrect ({tries_left} essai(s) restant(s))", f"{tries_left} tries left")
        self.tries_left = tries_left


class PinBlocked(CardError):
    """The CPS PIN is blocked: only its unblocking code (PUK, with the card issuer's tool) frees it."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("Carte CPS bloquée : débloquez-la avec son code de déblocage", detail)


# ---------------------------------------------------------------------------------------------------------
# Carte Vitale
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VitaleCard:
    """Everything read from one carte Vitale, complete or not at all."""

    beneficiaries: tuple[Beneficiary, ...]
    """In card order; the first one is the card holder (ouvrant droit)."""
    amo: dict[str, AmoRights] = field(default_factory=dict)
    """AMO rights by beneficiary NIR, when the reader can read them (the public structure does not hold them:
    the workflow then asks ADRi)."""
    data_on: date | None = None
    """Date the card's data was written, when the card tells it."""

    def to_event(self) -> CardInserted:
        """The workflow event of the identify step."""
        return CardInserted(beneficiaries=self.beneficiaries, amo=dict(self.amo), data_on=self.data_on)


class VitaleCardReader(Protocol):
    """Reads the carte Vitale in a reader. Raises :class:`CardError` subclasses, never returns half a card."""

    def read_vitale(self, reader: str) -> VitaleCard: ...


# ---------------------------------------------------------------------------------------------------------
# CPS
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardHolder:
    """The pharmacist a CPS belongs to."""

    rpps: str
    """RPPS number: 11 digits, the last one a Luhn key."""
    last_name: str
    first_name: str
    profession: str = ""
    """Profession code on the card ("21" is pharmacien in the RPPS nomenclature)."""

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True, slots=True)
class PinState:
    """What the kiosk shows before asking the PIN."""

    tries_left: int
    verified: bool = False

    @property
    def blocked(self) -> bool:
        return self.tries_left == 0 and not self.verified


class CpsAuthenticator(Protocol):
    """The pharmacist's card: who it belongs to and whether they know its PIN.

    Implementations keep no PIN. ``verify_pin`` raises :class:`WrongPin` (with the tries left),
    :class:`PinBlocked`, :class:`CardRemovedError` or :class:`CardReadError`.
    """

    def holder(self, reader: str) -> CardHolder: ...

    def pin_state(self, reader: str) -> PinState: ...

    def verify_pin(self, reader: str, pin: str) -> CardHolder: ...


# ---------------------------------------------------------------------------------------------------------
# What the card station tells the kiosk (beside the workflow's CardInserted / CardRemoved)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpsInserted:
    """A CPS is in ``reader``: the kiosk shows the holder and asks the PIN (``pin.tries_left`` tries)."""

    reader: str
    holder: CardHolder
    pin: PinState


@dataclass(frozen=True, slots=True)
class CpsRemoved:
    """The CPS left ``reader``: the kiosk locks the pharmacist panel and ends the operator session."""

    reader: str
    cause: AbsenceCause = AbsenceCause.REMOVED


@dataclass(frozen=True, slots=True)
class CardProblem:
    """A card could not be used; ``message`` is shown on the kiosk as is."""

    reader: str
    kind: CardKind
    message: str


UNKNOWN_CARD_MESSAGE = "Carte non reconnue : présentez une carte Vitale ou une carte CPS"
