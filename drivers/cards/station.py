"""The card station: what the workflow and the kiosk hear when cards come and go.

It is the sink of the :class:`~drivers.cards.supervisor.ReaderSupervisor` and turns presence into meaning:

===================  =================================================================================
card event           told to the station's sink
===================  =================================================================================
carte Vitale in      read whole through the :class:`~appliance.cards.VitaleCardReader` port, then the
                     workflow's ``CardInserted``; or a :class:`~appliance.cards.CardProblem` with the
                     French message ("Carte retirée pendant la lecture, réinsérez-la"...)
carte Vitale out     the workflow's ``CardRemoved`` (only after a ``CardInserted`` from that reader)
CPS in               :class:`~appliance.cards.CpsInserted`: holder (RPPS, name) and the PIN tries left,
                     for the kiosk to ask the PIN (``CpsAuthenticator.verify_pin``, off the UI thread)
CPS out              :class:`~appliance.cards.CpsRemoved`, always, whatever happened at insertion: the
                     kiosk locks the pharmacist panel and ends the operator session
unknown card in      :class:`~appliance.cards.CardProblem` "Carte non reconnue..."
===================  =================================================================================

Reading happens in the supervisor's thread (a Vitale read is a few APDUs; a card removed meanwhile is
reported right after). The sink must hand events to the UI thread without blocking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from appliance.cards import (
    UNKNOWN_CARD_MESSAGE,
    CardAbsent,
    CardError,
    CardKind,
    CardPresence,
    CardPresent,
    CardProblem,
    CpsAuthenticator,
    CpsInserted,
    CpsRemoved,
    VitaleCardReader,
)
from appliance.workflow.events import CardInserted, CardRemoved

log = logging.getLogger(__name__)

StationEvent = CardInserted | CardRemoved | CpsInserted | CpsRemoved | CardProblem
StationSink = Callable[[StationEvent], None]


class CardStation:
    """Callable sink for the supervisor; forwards meaningful events to ``sink``."""

    def __init__(self, sink: StationSink, vitale: VitaleCardReader, cps: CpsAuthenticator) -> None:
        self._sink = sink
        self._vitale = vitale
        self._cps = cps
        self._vitale_delivered: set[str] = set()

    def __call__(self, event: CardPresence) -> None:
        if isinstance(event, CardPresent):
            self._present(event)
        else:
            self._absent(event)

    def _present(self, event: CardPresent) -> None:
        if event.kind is CardKind.UNKNOWN:
            self._sink(CardProblem(event.reader, event.kind, UNKNOWN_CARD_MESSAGE))
            return
        try:
            if event.kind is CardKind.VITALE:
                card = self._vitale.read_vitale(event.reader)
                self._vitale_delivered.add(event.reader)
                self._sink(card.to_event())
            else:
                holder = self._cps.holder(event.reader)
                self._sink(CpsInserted(event.reader, holder, self._cps.pin_state(event.reader)))
        except CardError as exc:
            log.warning("%s card in %r not used: %s", event.kind.value, event.reader, exc.detail or exc.message)
            self._sink(CardProblem(event.reader, event.kind, exc.message))

    def _absent(self, event: CardAbsent) -> None:
        if event.kind is CardKind.VITALE and event.reader in self._vitale_delivered:
            self._vitale_delivered.discard(event.reader)
            self._sink(CardRemoved())
        elif event.kind is CardKind.CPS:
            self._sink(CpsRemoved(event.reader, event.cause))
