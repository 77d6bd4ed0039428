"""ISO 7816-4 pieces the card readers share: command APDUs, BER-TLV, binary files read whole."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from appliance.cards import CardReadError
from drivers.cards.pcsc import CardChannel, Response

MAX_FILE = 8192
"""Longest transparent file read; a card claiming more is broken (or hostile)."""


def select_mf() -> bytes:
    """SELECT the master file 3F00 by its file id (no FCI asked)."""
    return bytes.fromhex("00A40000023F00")


def select_aid(aid: bytes) -> bytes:
    """SELECT an application by its AID (first or only occurrence, FCI returned if the card has one)."""
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid + b"\x00"


def read_binary_sfi(sfi: int, offset: int = 0, length: int = 0) -> bytes:
    """READ BINARY of the file with short id ``sfi`` (which also becomes the current file); Le 0 = 256."""
    if not 1 <= sfi <= 30 or not 0 <= offset <= 255:
        raise ValueError("SFI is 1..30 and an SFI read starts within the first 256 bytes")
    return bytes([0x00, 0xB0, 0x80 | sfi, offset, length & 0xFF])


def read_binary(offset: int, length: int = 0) -> bytes:
    """READ BINARY of the current file from ``offset`` (15 bits)."""
    if not 0 <= offset <= 0x7FFF:
        raise ValueError("READ BINARY offset is 15 bits")
    return bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, length & 0xFF])


def expect_ok(response: Response, what: str) -> bytes:
    """The data of a 9000 answer; anything else is a card that is not what its ATR said."""
    if not response.ok:
        raise CardReadError("Carte illisible, réinsérez-la", f"{what}: status word {response.sw:04X}")
    return response.data


def read_whole_file(channel: CardChannel, sfi: int, what: str) -> bytes:
    """A transparent file by SFI, in 256-byte reads until a short one (or end of file: 6282, 6B00)."""
    data = bytearray()
    response = channel.transmit(read_binary_sfi(sfi))
    while True:
        if response.sw == 0x6B00 and data:  # offset past the end: the previous read ended the file exactly
            break
        if response.sw not in (0x9000, 0x6282):
            raise CardReadError("Carte illisible, réinsérez-la", f"{what}: status word {response.sw:04X}")
        data += response.data
        if response.sw == 0x6282 or len(response.data) < 256:
            break
        if len(data) >= MAX_FILE:
            raise CardReadError("Carte illisible, réinsérez-la", f"{what}: longer than {MAX_FILE} bytes")
        response = channel.transmit(read_binary(len(data)))
    return bytes(data)


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes

    def children(self) -> list[Tlv]:
        return list(iter_tlv(self.value))

    def find(self, tag: int) -> bytes | None:
        for child in iter_tlv(self.value):
            if child.tag == tag:
                return child.value
        return None


def iter_tlv(data: bytes) -> Iterator[Tlv]:
    """BER-TLV objects one after the other; stops at 00/FF padding. Raises CardReadError on a cut object."""
    i = 0
    while i < len(data):
        tag = data[i]
        if tag in (0x00, 0xFF):  # padding of the rest of the file
            return
        i += 1
        if tag & 0x1F == 0x1F:  # multi-byte tag
            while True:
                if i >= len(data):
                    raise CardReadError("Carte illisible, réinsérez-la", "TLV tag cut short")
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        if i >= len(data):
            raise CardReadError("Carte illisible, réinsérez-la", f"TLV {tag:X} without length")
        length = data[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 3 or i + count > len(data):
                raise CardReadError("Carte illisible, réinsérez-la", f"TLV {tag:X} with a bad length")
            length = int.from_bytes(data[i : i + count], "big")
            i += count
        if i + length > len(data):
            raise CardReadError("Carte illisible, réinsérez-la", f"TLV {tag:X} longer than its file")
        yield Tlv(tag, bytes(data[i : i + length]))
        i += length


def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV object (single- or two-byte tag), the inverse of :func:`iter_tlv`."""
    head = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n <= 0xFF:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    return head + length + value
