"""A thin, typed layer over pyscard's raw ``smartcard.scard`` calls, and the card channel the card readers use.

pyscard's high-level classes (CardMonitor, CardRequest) hide the very return codes a supervisor needs to
survive a pcscd restart, so the drivers call the PC/SC functions themselves through :class:`PcscApi`. Codes
are kept as unsigned 32-bit values (pyscard may return them sign-extended) and failures raise
:class:`PcscError`, which knows whether the service, the reader or the card went away.

:func:`open_card` gives a :class:`CardChannel`: one connection to the card in a reader, inside a PC/SC
transaction (no other program interleaves its APDUs), T=0 ``61xx``/``6Cxx`` handled, and every PC/SC
failure turned into the card port's French errors.

The PC/SC socket is libpcsclite's: ``/run/pcscd/pcscd.comm`` unless ``PCSCLITE_CSOCK_NAME`` names another,
read once, at the first call of the process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from smartcard import scard as _scard  # type: ignore[import-untyped, unused-ignore]

from appliance.cards import CardError, CardReadError, CardRemovedError, ReaderUnavailable

log = logging.getLogger(__name__)

scard: Any = _scard

PNP_READER: Final = "\\\\?PnP?\\Notification"
"""The pseudo-reader whose state changes when a reader is added or removed."""
INFINITE: Final = 0x7FFFFFFF

STATE_UNAWARE: Final = 0x0000
STATE_IGNORE: Final = 0x0001
STATE_CHANGED: Final = 0x0002
STATE_UNKNOWN: Final = 0x0004
STATE_UNAVAILABLE: Final = 0x0008
STATE_EMPTY: Final = 0x0010
STATE_PRESENT: Final = 0x0020
STATE_MUTE: Final = 0x0200

S_SUCCESS: Final = 0x00000000
E_CANCELLED: Final = 0x80100002
E_INVALID_HANDLE: Final = 0x80100003
E_UNKNOWN_READER: Final = 0x80100009
E_TIMEOUT: Final = 0x8010000A
E_SHARING_VIOLATION: Final = 0x8010000B
E_NO_SMARTCARD: Final = 0x8010000C
F_COMM_ERROR: Final = 0x80100013
E_NOT_TRANSACTED: Final = 0x80100016
E_READER_UNAVAILABLE: Final = 0x80100017
E_NO_SERVICE: Final = 0x8010001D
E_SERVICE_STOPPED: Final = 0x8010001E
E_NO_READERS_AVAILABLE: Final = 0x8010002E
W_UNRESPONSIVE_CARD: Final = 0x80100066
W_UNPOWERED_CARD: Final = 0x80100067
W_RESET_CARD: Final = 0x80100068
W_REMOVED_CARD: Final = 0x80100069

_NAMES: Final = {
    E_CANCELLED: "SCARD_E_CANCELLED",
    E_INVALID_HANDLE: "SCARD_E_INVALID_HANDLE",
    E_UNKNOWN_READER: "SCARD_E_UNKNOWN_READER",
    E_TIMEOUT: "SCARD_E_TIMEOUT",
    E_SHARING_VIOLATION: "SCARD_E_SHARING_VIOLATION",
    E_NO_SMARTCARD: "SCARD_E_NO_SMARTCARD",
    F_COMM_ERROR: "SCARD_F_COMM_ERROR",
    E_NOT_TRANSACTED: "SCARD_E_NOT_TRANSACTED",
    E_READER_UNAVAILABLE: "SCARD_E_READER_UNAVAILABLE",
    E_NO_SERVICE: "SCARD_E_NO_SERVICE",
    E_SERVICE_STOPPED: "SCARD_E_SERVICE_STOPPED",
    E_NO_READERS_AVAILABLE: "SCARD_E_NO_READERS_AVAILABLE",
    W_UNRESPONSIVE_CARD: "SCARD_W_UNRESPONSIVE_CARD",
    W_UNPOWERED_CARD: "SCARD_W_UNPOWERED_CARD",
    W_RESET_CARD: "SCARD_W_RESET_CARD",
    W_REMOVED_CARD: "SCARD_W_REMOVED_CARD",
}

SERVICE_GONE: Final = frozenset({E_NO_SERVICE, E_SERVICE_STOPPED, F_COMM_ERROR, E_INVALID_HANDLE})
"""The context is dead: pcscd stopped or restarted. Only a new context helps."""
READER_GONE: Final = frozenset({E_UNKNOWN_READER, E_READER_UNAVAILABLE})
CARD_GONE: Final = frozenset(
    {E_NO_SMARTCARD, W_REMOVED_CARD, W_RESET_CARD, W_UNPOWERED_CARD, W_UNRESPONSIVE_CARD, E_NOT_TRANSACTED}
)
"""Codes a transmit returns when the card left in the middle (vpcd and real readers alike)."""


class PcscError(Exception):
    """A PC/SC call failed; ``code`` is the unsigned SCARD_* value."""

    def __init__(self, call: str, code: int) -> None:
        self.call = call
        self.code = code & 0xFFFFFFFF
        super().__init__(f"{call}: {code_name(self.code)}")

    @property
    def service_gone(self) -> bool:
        return self.code in SERVICE_GONE

    @property
    def reader_gone(self) -> bool:
        return self.code in READER_GONE

    @property
    def card_gone(self) -> bool:
        return self.code in CARD_GONE


def code_name(code: int) -> str:
    code &= 0xFFFFFFFF
    return _NAMES.get(code, f"0x{code:08X}")


@dataclass(frozen=True, slots=True)
class ReaderState:
    """One entry of SCardGetStatusChange's answer."""

    reader: str
    event_state: int
    atr: bytes

    @property
    def present(self) -> bool:
        return bool(self.event_state & STATE_PRESENT) and not self.event_state & STATE_MUTE

    @property
    def gone(self) -> bool:
        """The reader vanished (pcsc-lite reports it UNKNOWN, or IGNORE/UNAVAILABLE)."""
        return bool(self.event_state & (STATE_UNKNOWN | STATE_UNAVAILABLE | STATE_IGNORE))

    @property
    def event_count(self) -> int:
        """pcsc-lite counts card insertions and removals in the high word: a quick swap shows here."""
        return (self.event_state >> 16) & 0xFFFF


class PcscApi:
    """The PC/SC calls the drivers make, typed, raising :class:`PcscError` instead of returning codes.

    One instance per context owner; ``cancel`` may be called from another thread (it is how a blocked
    ``get_status_change`` is woken up when the supervisor stops).
    """

    def establish(self) -> int:
        hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check("SCardEstablishContext", hr)
        return int(context)

    def release(self, context: int) -> None:
        hr = scard.SCardReleaseContext(context)
        if hr & 0xFFFFFFFF not in (S_SUCCESS, *SERVICE_GONE):
            log.debug("SCardReleaseContext: %s", code_name(hr))

    def list_readers(self, context: int) -> list[str]:
        try:
            hr, readers = scard.SCardListReaders(context, [])
        except SystemError:
            # pyscard 2.x raises this (after printing "Failed to SCardFreeMemory!") when the list is empty.
            return []
        if hr & 0xFFFFFFFF == E_NO_READERS_AVAILABLE:
            return []
        _check("SCardListReaders", hr)
        return [str(r) for r in readers]

    def get_status_change(
        self, context: int, timeout_ms: int, states: Sequence[tuple[str, int]]
    ) -> list[ReaderState] | None:
        """Block until one state differs from the given ``(reader, current_state)``; None on timeout."""
        hr, out = scard.SCardGetStatusChange(context, timeout_ms, list(states))
        if hr & 0xFFFFFFFF == E_TIMEOUT:
            return None
        _check("SCardGetStatusChange", hr)
        return [ReaderState(str(r), int(state) & 0xFFFFFFFF, bytes(atr)) for r, state, atr in out]

    def cancel(self, context: int) -> None:
        scard.SCardCancel(context)

    def connect(self, context: int, reader: str) -> tuple[int, int]:
        """Shared connection, T=0 or T=1 as the card offers: (card handle, active protocol)."""
        hr, card, protocol = scard.SCardConnect(
            context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        _check("SCardConnect", hr)
        return int(card), int(protocol)

    def begin_transaction(self, card: int) -> None:
        _check("SCardBeginTransaction", scard.SCardBeginTransaction(card))

    def end_transaction(self, card: int) -> None:
        scard.SCardEndTransaction(card, scard.SCARD_LEAVE_CARD)

    def disconnect(self, card: int) -> None:
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)

    def transmit(self, card: int, protocol: int, apdu: bytes) -> bytes:
        hr, response = scard.SCardTransmit(card, protocol, list(apdu))
        _check("SCardTransmit", hr)
        return bytes(response)


def _check(call: str, hr: int) -> None:
    if hr & 0xFFFFFFFF != S_SUCCESS:
        raise PcscError(call, hr)


# ---------------------------------------------------------------------------------------------------------
# Card channel
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """A response APDU: data and status word."""

    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000


class CardChannel(Protocol):
    """Sends command APDUs to one card and returns its responses (T=0 chaining already done)."""

    def transmit(self, apdu: bytes) -> Response: ...


CardOpener = Callable[[str], AbstractContextManager[CardChannel]]
"""Opens a channel to the card in the named reader; a test or a vendor transport can stand in."""


class PcscChannel:
    """A :class:`CardChannel` over a PC/SC card handle."""

    def __init__(self, api: PcscApi, card: int, protocol: int) -> None:
        self._api = api
        self._card = card
        self._protocol = protocol

    def transmit(self, apdu: bytes) -> Response:
        raw = self._exchange(apdu)
        sw1, sw2 = raw[-2], raw[-1]
        if sw1 == 0x6C:  # T=0: wrong Le, the card says which one
            raw = self._exchange(apdu[:-1] + bytes([sw2]) if len(apdu) > 4 else apdu + bytes([sw2]))
        data = bytearray(raw[:-2])
        while raw[-2] == 0x61:  # T=0: more bytes waiting, GET RESPONSE
            raw = self._exchange(bytes([0x00, 0xC0, 0x00, 0x00, raw[-1]]))
            data += raw[:-2]
        return Response(bytes(data), (raw[-2] << 8) | raw[-1])

    def _exchange(self, apdu: bytes) -> bytes:
        raw = self._api.transmit(self._card, self._protocol, apdu)
        if len(raw) < 2:
            # No ISO 7816 response lacks a status word. vpcd (and some readers) report an exchange cut by the
            # card leaving as a success with no bytes rather than an error: it is a removal.
            raise CardRemovedError(f"SCardTransmit: {len(raw)}-byte response, no status word")
        return raw


def card_error(exc: PcscError) -> CardError:
    """The card port's error for a PC/SC failure during a card session."""
    if exc.card_gone:
        return CardRemovedError(str(exc))
    if exc.service_gone or exc.reader_gone:
        return ReaderUnavailable(str(exc))
    return CardReadError("Carte illisible, réinsérez-la", str(exc))


@contextlib.contextmanager
def open_card(reader: str, api: PcscApi | None = None) -> Iterator[CardChannel]:
    """A channel to the card in ``reader`` for the length of the ``with`` block, inside a PC/SC transaction.

    Every PC/SC failure inside the block, including one raised by the block's own transmits, comes out as a
    :class:`CardError`; the card is left as it is (not reset) when the block ends, so another reader of the
    same card (the CPS middleware) keeps its state.
    """
    api = api or PcscApi()
    try:
        context = api.establish()
    except PcscError as exc:
        raise ReaderUnavailable(str(exc)) from None
    try:
        try:
            card, protocol = api.connect(context, reader)
        except PcscError as exc:
            if exc.code in (E_NO_SMARTCARD, W_REMOVED_CARD, W_UNPOWERED_CARD):
                raise CardRemovedError(str(exc)) from None
            raise card_error(exc) from None
        try:
            api.begin_transaction(card)
            yield PcscChannel(api, card, protocol)
        except PcscError as exc:
            raise card_error(exc) from None
        finally:
            with contextlib.suppress(PcscError):
                api.end_transaction(card)
            with contextlib.suppress(PcscError):
                api.disconnect(card)
    finally:
        api.release(context)
