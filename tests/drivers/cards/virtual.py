"""Virtual smart cards speaking vpcd's socket protocol, so real pcscd + real vsmartcard-vpcd read them.

vpcd (the PC/SC driver of vsmartcard, loaded by pcscd from a reader.conf entry) listens on a TCP port per
slot; a virtual card *connects* to it to be inserted and closes the connection to be removed. Frames both
ways are a 2-byte big-endian length then the payload. From vpcd, a 1-byte payload is a control: 0 power off,
1 power on, 2 reset, 4 "send your ATR" (also vpcd's presence poll, about every 400 ms); any longer payload is
a command APDU, answered with the response APDU (data + status word). Debian's ``vicc`` is broken, hence
these cards.

- :class:`VirtualVitale`: the public Vitale 2 structure (see ``drivers/cards/vitale.py``): MF ``3F00`` with
  short file 2 (``65`` templates: ``80`` name, ``81`` first name, ``82`` birth date, ``83`` rank), the
  VITALE application (``65`` templates with ``90`` nationality and ``93`` NIR, ``66``/``80`` card date).
- :class:`VirtualCps`: the CPS test applet documented in ``drivers/cards/cps.py`` (PIN, 63Cx, 6983).
- :class:`UnknownCard`: a Java Card ATR that answers nothing useful.
- :class:`VpcdSlot`: one vpcd slot: ``insert(card)``, ``remove()``; it reconnects by itself while a card is
  inserted and vpcd goes away (pcscd restarting), like a card that stays in a reader.

A card given ``vanish_after=n`` drops the connection instead of answering its n-th APDU: pulled out
mid-read. All waits are bounded; threads are daemons and end on ``remove()``/``close()``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from drivers.cards.apdu import tlv
from drivers.cards.cps import CPS_TEST_AID, PIN_TRIES
from drivers.cards.vitale import VITALE_AID

VITALE_ATR = bytes.fromhex("3B751300004409EA9000")
"""Carte Vitale 2 with photo, from the public smartcard_list.txt."""
CPS_ATR = bytes.fromhex("3BAC00402A001225006480000310009000")
"""CPS (contact), from the public smartcard_list.txt."""
UNKNOWN_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
"""A PC/SC contactless storage card: neither Vitale nor CPS."""

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"
SW_NO_EF = b"\x69\x86"
SW_WRONG_OFFSET = b"\x6b\x00"
SW_INS = b"\x6d\x00"
SW_CLA = b"\x6e\x00"
SW_BLOCKED = b"\x69\x83"
SW_CONDITIONS = b"\x69\x85"


class CardVanished(Exception):
    """Raised by a card instead of answering: the slot drops the connection, the card is gone."""


class VirtualCard(ABC):
    """A card: an ATR and APDU handling; counts APDUs (not vpcd's ATR polls)."""

    atr: bytes

    def __init__(self, *, vanish_after: int | None = None) -> None:
        self.vanish_after = vanish_after
        self.apdu_count = 0
        self._lock = threading.Lock()

    def answer(self, apdu: bytes) -> bytes:
        with self._lock:
            self.apdu_count += 1
            if self.vanish_after is not None and self.apdu_count >= self.vanish_after:
                raise CardVanished
            if len(apdu) < 4:
                return b"\x67\x00"
            return self.process(apdu)

    def power_on(self) -> None:  # noqa: B027 - cards without volatile state need nothing
        """Power on or reset: volatile state (selected file, verified PIN) is lost."""

    @abstractmethod
    def process(self, apdu: bytes) -> bytes:
        """Response APDU (data + status word) to one command APDU."""


def _le(apdu: bytes) -> int:
    """Le of a case-2 APDU (no data): 0 means 256."""
    return (apdu[4] or 256) if len(apdu) == 5 else 256


# ---------------------------------------------------------------------------------------------------------
# Carte Vitale
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardPerson:
    """One beneficiary as the card stores them."""

    name: str
    first_name: str
    birth_date: str
    """YYYYMMDD, as on the card."""
    nir: str
    """15 characters, key included."""
    rank: int | None = None
    nationality: str = "FR"


class VirtualVitale(VirtualCard):
    """A carte Vitale 2 holding ``people`` (the first one is the card holder)."""

    def __init__(
        self,
        people: list[CardPerson],
        *,
        data_on: str | None = "20240115",
        atr: bytes = VITALE_ATR,
        vanish_after: int | None = None,
    ) -> None:
        super().__init__(vanish_after=vanish_after)
        self.atr = atr
        identity = b""
        vitale = b""
        for p in people:
            fields = tlv(0x80, p.name.encode("latin-1")) + tlv(0x81, p.first_name.encode("latin-1"))
            fields += tlv(0x82, p.birth_date.encode("ascii"))
            if p.rank is not None:
                fields += tlv(0x83, str(p.rank).encode("ascii"))
            identity += tlv(0x65, fields)
            vitale += tlv(0x65, tlv(0x90, p.nationality.encode("ascii")) + tlv(0x93, p.nir.encode("ascii")))
        if data_on is not None:
            vitale += tlv(0x66, tlv(0x80, data_on.encode("ascii")))
        # Files are padded to a round size like real EFs, which also makes multi-read files likely.
        self.files = {"mf": identity + b"\x00" * 16, "vitale": vitale + b"\xff" * 16}
        self.df: str | None = None
        self.ef: bytes | None = None

    def power_on(self) -> None:
        self.df = None
        self.ef = None

    def process(self, apdu: bytes) -> bytes:
        cla, ins, p1, p2 = apdu[:4]
        if cla != 0x00:
            return SW_CLA
        if ins == 0xA4:
            data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
            if p1 == 0x00 and data == b"\x3f\x00":
                self.df, self.ef = "mf", None
                return SW_OK
            if p1 == 0x04 and data == VITALE_AID:
                self.df, self.ef = "vitale", None
                return SW_OK
            return SW_NOT_FOUND
        if ins == 0xB0:
            if p1 & 0x80:
                if p1 & 0x1F != 2 or self.df is None:
                    return SW_NOT_FOUND
                self.ef = self.files[self.df]
                offset = p2
            else:
                offset = (p1 << 8) | p2
            if self.ef is None:
                return SW_NO_EF
            if offset >= len(self.ef):
                return SW_WRONG_OFFSET
            return self.ef[offset : offset + _le(apdu)] + SW_OK
        return SW_INS


# ---------------------------------------------------------------------------------------------------------
# CPS test applet
# ---------------------------------------------------------------------------------------------------------


class VirtualCps(VirtualCard):
    """The documented CPS test applet, with a PIN and its try counter (which survives power-off)."""

    def __init__(
        self,
        *,
        rpps: str,
        last_name: str,
        first_name: str,
        pin: str,
        tries_left: int = PIN_TRIES,
        profession: str = "21",
        atr: bytes = CPS_ATR,
        vanish_after: int | None = None,
    ) -> None:
        super().__init__(vanish_after=vanish_after)
        self.atr = atr
        self.pin = pin.encode("ascii").ljust(8, b"\xff")
        self.tries_left = tries_left
        self.holder = (
            tlv(0x80, rpps.encode("ascii"))
            + tlv(0x81, last_name.encode("latin-1"))
            + tlv(0x82, first_name.encode("latin-1"))
            + tlv(0x83, profession.encode("ascii"))
        )
        self.selected = False
        self.verified = False

    def power_on(self) -> None:
        self.selected = False
        self.verified = False

    def _tries(self) -> bytes:
        return SW_BLOCKED if self.tries_left == 0 else bytes([0x63, 0xC0 | self.tries_left])

    def process(self, apdu: bytes) -> bytes:
        cla, ins, p1, p2 = apdu[:4]
        if ins == 0xA4 and cla == 0x00:
            self.selected = p1 == 0x04 and len(apdu) > 5 and apdu[5 : 5 + apdu[4]] == CPS_TEST_AID
            return SW_OK if self.selected else SW_NOT_FOUND
        if not self.selected:
            return SW_CONDITIONS
        if cla == 0x80 and ins == 0xCA and (p1, p2) == (1, 1):
            return self.holder + SW_OK
        if cla == 0x00 and ins == 0x20 and p2 == 0x01:
            if len(apdu) == 4:
                return SW_OK if self.verified else self._tries()
            if self.tries_left == 0:
                return SW_BLOCKED
            if apdu[5:13] == self.pin and apdu[4] == 8:
                self.tries_left = PIN_TRIES
                self.verified = True
                return SW_OK
            self.tries_left -= 1
            self.verified = False
            return self._tries()
        return SW_INS if cla in (0x00, 0x80) else SW_CLA


class UnknownCard(VirtualCard):
    """Neither Vitale nor CPS: answers every command with 6D00."""

    atr = UNKNOWN_ATR

    def process(self, apdu: bytes) -> bytes:
        return SW_NOT_FOUND if apdu[1] == 0xA4 else SW_INS


# ---------------------------------------------------------------------------------------------------------
# vpcd slot
# ---------------------------------------------------------------------------------------------------------


class VpcdSlot:
    """One vpcd slot on 127.0.0.1:``port``, into which tests insert virtual cards."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self._card: VirtualCard | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.connected_at = 0.0
        """time.perf_counter() when vpcd last accepted the card: the moment of insertion."""
        self.vanished = threading.Event()

    @property
    def card(self) -> VirtualCard | None:
        return self._card

    def insert(self, card: VirtualCard) -> None:
        """Insert ``card`` (after removing the one inside); returns at once, the slot connects in background."""
        self.remove()
        self.vanished.clear()
        self._card = card
        self._thread = threading.Thread(target=self._run, args=(card,), name=f"vpcd slot {self.port}", daemon=True)
        self._thread.start()

    def remove(self, timeout: float = 3.0) -> None:
        """Pull the card out: the connection closes, vpcd reports the slot empty at its next poll."""
        self._card = None
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"vpcd slot {self.port} thread did not end")
        self._thread = None

    close = remove

    def wait_connected(self, timeout: float = 5.0) -> None:
        if not self.connected.wait(timeout):
            raise TimeoutError(f"vpcd did not accept the card on port {self.port} within {timeout} s")

    def _run(self, card: VirtualCard) -> None:
        while self._card is card:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=0.5)
            except OSError:
                time.sleep(0.05)  # vpcd not listening (pcscd restarting): try again while inserted
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(0.2)
            with self._lock:
                self._sock = sock
            self.connected_at = time.perf_counter()
            self.connected.set()
            try:
                self._serve(sock, card)
            except CardVanished:
                self._card = None
                self.vanished.set()
            except (OSError, EOFError):
                pass  # vpcd went away (pcscd stopped) or remove() shut the socket
            finally:
                self.connected.clear()
                with self._lock:
                    self._sock = None
                sock.close()

    def _serve(self, sock: socket.socket, card: VirtualCard) -> None:
        while self._card is card:
            header = self._recv(sock, 2, card)
            (length,) = struct.unpack(">H", header)
            payload = self._recv(sock, length, card)
            if length == 1:
                control = payload[0]
                if control in (1, 2):
                    card.power_on()
                elif control == 4:
                    sock.sendall(struct.pack(">H", len(card.atr)) + card.atr)
                continue
            response = card.answer(payload)
            sock.sendall(struct.pack(">H", len(response)) + response)

    def _recv(self, sock: socket.socket, n: int, card: VirtualCard) -> bytes:
        data = b""
        while len(data) < n:
            if self._card is not card:
                raise EOFError
            # vpcd writes the length and the payload separately: acknowledge at once so that its second
            # write is not held by Nagle until our delayed ACK (40 ms per APDU otherwise).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            try:
                chunk = sock.recv(n - len(data))
            except TimeoutError:
                continue
            if not chunk:
                raise EOFError
            data += chunk
        return data
