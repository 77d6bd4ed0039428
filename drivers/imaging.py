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
    """AIM identifier: the one zxing-cpp reports, ``]d2``/``]Q3`` when the code is a GS1 message."""
    corners: tuple[tuple[int, int], ...]


class ImageError(ValueError):
    """An image file that cannot be opened or read."""


def _formats(symbols: Iterable[Symbol] | None) -> zxingcpp.BarcodeFormats:
    chosen = list(symbols) if symbols is not None else list(Symbol)
    return zxingcpp.barcode_formats_from_str(",".join(_ZX_FORMAT[s].name for s in chosen))


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
                symbology=_aim_identifier(barcode),
                corners=corners,
            )
        )
    return found


def _aim_identifier(barcode: zxingcpp.Barcode) -> str:
    """zxing-cpp flags GS1 content (FNC1 first) in ``content_type``; say it the way scanners do."""
    if barcode.content_type == zxingcpp.ContentType.GS1:
        return {zxingcpp.BarcodeFormat.DataMatrix: "]d2", zxingcpp.BarcodeFormat.QRCode: "]Q3"}.get(
            barcode.format, barcode.symbology_identifier
        )
    return str(barcode.symbology_identifier)


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
    """Draw a code as a greyscale image with a quiet zone, as it is printed on documents and boxes.

    ``gs1=True`` makes a GS1 DataMatrix (FNC1 first): pass the element strings with 0x1D
    between variable-length ones, without the leading FNC1. ASCII bytes are encoded as text (as
    printers do); other bytes in binary mode with an ECI. DataMatrix symbols are square, like the
    ones on medicine boxes.
    """
    options: dict[str, bool] = {"force_square": True} if symbol is Symbol.DATAMATRIX else {}
    content: bytes | str = data
    if isinstance(data, bytes) and data.isascii():
        content = data.decode("ascii")
    if gs1:
        text = content if isinstance(content, str) else content.decode("ascii")
        barcode = zxingcpp.create_barcode(_gs1_brackets(text), _ZX_FORMAT[symbol], gs1=True, **options)
    else:
        barcode = zxingcpp.create_barcode(content, _ZX_FORMAT[symbol], **options)
    return np.asarray(barcode.to_image(scale=scale), dtype=np.uint8)


def _gs1_brackets(text: str) -> str:
    """zxing-cpp wants GS1 content in the ``(AI)value`` human-readable form; parse with biip to get it."""
    import biip

    message = biip.gs1_messages.GS1Message.parse(text)
    return message.as_hri()


def save_png(frame: Frame, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame).save(path)
