"""The pharmacist's CPS over PC/SC, through a documented *test* applet.

The real CPS applet (IAS-ECC, its PIN references, the holder's data objects) is described only to the ANS's
licensed middleware vendors, so this driver speaks a small applet defined here and implemented by the test
suite's virtual card (``tests/drivers/cards/virtual.py``). In production the licensed CPS middleware
implements :class:`~appliance.cards.CpsAuthenticator` instead; the kiosk does not change.

The test applet, "comptoir CPS test applet" (all lengths in bytes, text is ASCII):

=================  =========================================  ================================================
command            APDU                                       answers
=================  =========================================  ================================================
SELECT             ``00 A4 04 00 0C`` AID ``00``              ``9000``; another AID: ``6A82``
                   AID ``F0 43 4F 4D 50 54 4F 49 52 43 50 53``
                   (``F0`` proprietary RID + "COMPTOIRCPS")
GET DATA holder    ``80 CA 01 01 00``                         TLV ``80`` RPPS (11 digits, Luhn key last),
                                                              ``81`` last name, ``82`` first name,
                                                              ``83`` profession code ("21" pharmacien),
                                                              ``9000``. Readable without the PIN.
VERIFY             ``00 20 00 01 08`` PIN, 4 to 8 digits,     ``9000``: right, the try counter is back to 3;
                   right-padded with ``FF`` to 8 bytes        ``63Cx``: wrong, ``x`` tries left;
                                                              ``6983``: blocked (no try left)
VERIFY, no data    ``00 20 00 01``                            ``9000`` when verified since power-on,
                                                              else ``63Cx`` (tries left) or ``6983``
anything else                                                 ``6D00`` (instruction), ``6E00`` (class)
=================  =========================================  ================================================

The status words are ISO 7816-4's, the ones any real PIN-holding applet gives. The verified state lasts
until the card is reset or powered off: connections leave the card as it is. This driver never keeps the
PIN; a PIN that is not 4 to 8 digits is refused before it reaches the card and costs no try.
"""

from __future__ import annotations

from stdnum import luhn

from appliance.cards import CardError, CardHolder, CardReadError, PinBlocked, PinState, WrongPin
from drivers.cards.apdu import expect_ok, iter_tlv
from drivers.cards.pcsc import CardChannel, CardOpener, open_card

CPS_TEST_AID = bytes.fromhex("F0434F4D50544F4952435053")
PIN_TRIES = 3
"""Tries the test applet gives a PIN (real CPS cards give three as well)."""
PIN_REFERENCE = 0x01

SELECT_APPLET = bytes([0x00, 0xA4, 0x04, 0x00, len(CPS_TEST_AID)]) + CPS_TEST_AID + b"\x00"
GET_HOLDER = bytes.fromhex("80CA010100")
VERIFY_STATUS = bytes([0x00, 0x20, 0x00, PIN_REFERENCE])

_UNREADABLE = "Carte CPS illisible, réinsérez-la"


def verify_command(pin: str) -> bytes:
    """VERIFY with the PIN padded to 8 bytes; refuses a PIN that is not 4 to 8 digits (no try lost)."""
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 8):
        raise CardError("Le code CPS a 4 à 8 chiffres", "malformed PIN refused before the card")
    return bytes([0x00, 0x20, 0x00, PIN_REFERENCE, 8]) + pin.encode("ascii").ljust(8, b"\xff")


def parse_holder(data: bytes) -> CardHolder:
    fields = {t.tag: t.value.decode("latin-1").strip() for t in iter_tlv(data)}
    rpps = fields.get(0x80, "")
    if len(rpps) != 11 or not rpps.isdigit() or not luhn.is_valid(rpps):
        raise CardReadError(_UNREADABLE, "RPPS number missing or with a bad Luhn key")
    if not fields.get(0x81):
        raise CardReadError(_UNREADABLE, "holder's last name missing")
    return CardHolder(
        rpps=rpps,
        last_name=fields[0x81].upper(),
        first_name=fields.get(0x82, ""),
        profession=fields.get(0x83, ""),
    )


def _pin_answer(sw: int) -> PinState:
    if sw == 0x9000:
        return PinState(PIN_TRIES, verified=True)
    if sw & 0xFFF0 == 0x63C0:
        return PinState(sw & 0x0F)
    if sw in (0x6983, 0x6984):
        return PinState(0)
    raise CardReadError(_UNREADABLE, f"VERIFY: status word {sw:04X}")


class PcscCpsAuthenticator:
    """:class:`~appliance.cards.CpsAuthenticator` for the documented test applet, over PC/SC."""

    def __init__(self, opener: CardOpener = open_card) -> None:
        self._opener = opener

    def holder(self, reader: str) -> CardHolder:
        with self._opener(reader) as channel:
            self._select(channel)
            return parse_holder(expect_ok(channel.transmit(GET_HOLDER), "GET DATA holder"))

    def pin_state(self, reader: str) -> PinState:
        with self._opener(reader) as channel:
            self._select(channel)
            return _pin_answer(channel.transmit(VERIFY_STATUS).sw)

    def verify_pin(self, reader: str, pin: str) -> CardHolder:
        command = verify_command(pin)
        with self._opener(reader) as channel:
            self._select(channel)
            state = _pin_answer(channel.transmit(command).sw)
            if state.blocked:
                raise PinBlocked("VERIFY answered blocked")
            if not state.verified:
                raise WrongPin(state.tries_left)
            return parse_holder(expect_ok(channel.transmit(GET_HOLDER), "GET DATA holder"))

    def _select(self, channel: CardChannel) -> None:
        response = channel.transmit(SELECT_APPLET)
        if not response.ok:
            raise CardReadError("Carte CPS non reconnue", f"SELECT CPS applet: status word {response.sw:04X}")
