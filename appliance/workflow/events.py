"""What drives a counter session: scans, cards, touches, time and the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from appliance.codes.kinds import DecodedCode
from appliance.domain import AmoRights, Beneficiary


@dataclass(frozen=True, slots=True)
class Scanned:
    code: DecodedCode


@dataclass(frozen=True, slots=True)
class CardInserted:
    """A carte Vitale was read: its beneficiaries, and the AMO rights it carries with their date."""

    beneficiaries: tuple[Beneficiary, ...]
    amo: dict[str, AmoRights] = field(default_factory=dict)
    """AMO rights on the card, by beneficiary NIR."""
    data_on: date | None = None
    """When the card's data was last updated (ADRi is asked when it is over a year old)."""


@dataclass(frozen=True, slots=True)
class CardRemoved:
    pass


@dataclass(frozen=True, slots=True)
class Intent:
    """A touch on the kiosk: a named action with its arguments."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the idle timeout is checked against the injected clock)."""


@dataclass(frozen=True, slots=True)
class NetworkChanged:
    online: bool


@dataclass(frozen=True, slots=True)
class Started:
    """The kiosk process started: after a normal boot, a crash or a power cut alike (it cannot tell)."""


@dataclass(frozen=True, slots=True)
class ResultShown:
    """The patient's screen has shown the result of a claim (its number and what to pay).

    Sent by the kiosk, not by a person: it is what tells, after a power cut, whether the last bill
    reached its patient (see :mod:`appliance.store.recent_claims`).
    """

    claim: int


Event = Scanned | CardInserted | CardRemoved | Intent | Tick | NetworkChanged | Started | ResultShown
