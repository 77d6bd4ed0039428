"""Codes in pictures: decode every code in an image or a camera frame, and render codes to images.

zxing-cpp does both. Decoding returns the raw bytes (``Barcode.bytes``): its ``.text`` would turn the
0x1D group separator into the four characters ``<GS>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt
import zxingcpp

Frame = npt.NDArray[np.uint8]
"""A greyscale (H, W) or colour (H, W, 3) image, uint8."""


class Symbol(StrEnum):
    """The 2D symbols read at the counter."""

    QR = "qr"
    DATAMATRIX = "datamatrix"


_ZX_FORMAT = {Symbol.QR: zxingcpp.BarcodeFormat.QRCode, Symbol.DATAMATRIX: zxingcpp.BarcodeFormat.DataMatrix}


@dataclass(frozen=True, slots=True)
class FoundCode:
    """One code found in an image."""

    raw: bytes
    symbol: Symbol | None
    symbology: str
    """AIM identifier reported by zxing-cpp (``]Q1``, ``]d2``...)."""
    corners: tuple[tuple[int, int], ...]


class ImageError(ValueError):
    """An image file that cannot be opened or read."""


def _formats(symbols: Iterable[Symbol] | None) -> zxingcpp.BarcodeFormats | zxingcpp.BarcodeFormat:
    chosen = list(symbols) if symbols is not None else list(Symbol)
    fmt = _ZX_FORMAT[chosen[0]]
    for symbol in chosen[1:]:
        fmt = fmt | _ZX_FORMAT[symbol]
    return fmt


def _symbol_of(fmt: object) -> Symbol | None:
    for symbol, zx in _ZX_FORMAT.items():
        if fmt == zx:
            return symbol
    return None


def decode_frame(frame: Frame, symbols: Iterable[Symbol] | None = None) -> list[FoundCode]:
    """Every valid code of the given kinds in a frame (all 2D kinds by default)."""
    found = []
    for barcode in zxingcpp.read_barcodes(frame, formats=_formats(symbols)):
        if not barcode.valid:
            continue
        pos = barcode.position
        corners = tuple((p.x, p.y) for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left))
        found.append(
            FoundCode(
                raw=bytes(barcode.bytes),
                symbol=_symbol_of(barcode.format),
                symbology=barcode.symbology_identifier,
                corners=corners,
            )
        )
    return found


def load_image(path: Path) -> Frame:
    """A PNG or JPEG file as a greyscale frame."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def decode_image(path: Path, symbols: Iterable[Symbol] | None = None) -> list[FoundCode]:
    """Every code in an image file."""
    return decode_frame(load_image(path), symbols)


def render(data: bytes | str, symbol: Symbol, *, gs1: bool = False, scale: int = 4) -> Frame:
    """Draw a code as a greyscale image with a quiet zone.

    ``gs1=True`` makes a GS1 DataMatrix (FNC1 first): pass the element strings with 0x1D
    between variable-length ones, without the leading FNC1.
    """
    if gs1:
        text = data.decode("ascii") if isinstance(data, bytes) else data
        barcode = zxingcpp.create_barcode(_gs1_brackets(text), _ZX_FORMAT[symbol], gs1=True)
    else:
        barcode = zxingcpp.create_barcode(data, _ZX_FORMAT[symbol])
    return np.asarray(barcode.to_image(scale=scale), dtype=np.uint8)


def _gs1_brackets(text: str) -> str:
    """zxing-cpp wants GS1 content in the ``(AI)value`` human-readable form; parse with biip to get it."""
    import biip

    message = biip.gs1_messages.GS1Message.parse(text)
    return message.as_hri()


def save_png(frame: Frame, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path)
