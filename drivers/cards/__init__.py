"""Smart cards over PC/SC: the reader supervisor, the carte Vitale reader, the CPS authenticator.

- :mod:`drivers.cards.supervisor`: :class:`ReaderSupervisor`, cards in and out of every reader, by ATR kind.
- :mod:`drivers.cards.vitale`: :class:`PcscVitaleReader`, the public Vitale 2 structure.
- :mod:`drivers.cards.cps`: :class:`PcscCpsAuthenticator`, the documented CPS test applet.
- :mod:`drivers.cards.station`: :class:`CardStation`, presence turned into workflow and kiosk events.
- :mod:`drivers.cards.atr`, :mod:`drivers.cards.pcsc`, :mod:`drivers.cards.apdu`: ATR rules, typed PC/SC
  calls and card channel, APDUs and TLV.

The ports they implement are in :mod:`appliance.cards`. Importing this package starts nothing.
"""

from drivers.cards.atr import DEFAULT_ATR_RULES, AtrRule, AtrRules
from drivers.cards.cps import PcscCpsAuthenticator
from drivers.cards.station import CardStation, StationEvent
from drivers.cards.supervisor import ReaderSupervisor, SupervisorConfig
from drivers.cards.vitale import PcscVitaleReader, parse_vitale

__all__ = [
    "DEFAULT_ATR_RULES",
    "AtrRule",
    "AtrRules",
    "CardStation",
    "PcscCpsAuthenticator",
    "PcscVitaleReader",
    "ReaderSupervisor",
    "StationEvent",
    "SupervisorConfig",
    "parse_vitale",
]
