"""Deterministic 640×480 greyscale camera-like frames holding one counter code each.

Reusable by any benchmark or test that needs realistic frames: :func:`counter_payloads` gives the
codes read at a pharmacy counter, :func:`make_frames` puts each of them in a frame under every
:data:`CONDITIONS` (clean, rotated 15° and 40°, Gaussian blur σ 1.5 and 2 px, low contrast with
noise). Frames depend only on the seed: the same arguments give byte-identical frames on every run.

DataMatrix symbols are drawn square (ECC 200 square sizes, as printed on medicine boxes, INS and 2D-DOC
codes). ``drivers.imaging.render`` lets zxing-cpp pick the smallest symbol, which for short payloads is a
DMRE rectangle (ISO/IEC 21471, e.g. 8×64) that libdmtx cannot read at all; forcing square keeps the
comparison about reading pictures rather than about which symbol sizes a library knows.
"""

from __future__ import annotations

import hashlib
import string
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import biip
import numpy as np
import zxingcpp
from PIL import Image, ImageFilter

from drivers.imaging import Frame, Symbol, render

WIDTH: Final = 640
HEIGHT: Final = 480
BACKGROUND: Final = 255
CODE_SIDE_PX: Final = 200
"""Rough side of a code in the frame: a box held 10-15 cm from a 640×480 counter camera."""

BLURS: Final = {"blur1.5": 1.5, "blur2": 2.0}
"""Gaussian blur conditions and their standard deviation in px (modules are 4 to 8 px wide)."""
CONDITIONS: Final = ("clean", "rot15", "rot40", *BLURS, "lowcontrast")
"""Picture conditions, in table order."""
LOW_CONTRAST: Final = (100, 150)
"""Dark and light grey levels of the ``lowcontrast`` condition."""
NOISE_SIGMA: Final = 8.0
"""Standard deviation of the Gaussian noise added to ``lowcontrast`` frames (grey levels)."""

GS = "\x1d"


@dataclass(frozen=True, slots=True)
class Payload:
    """A code as printed: what it carries and how it is drawn."""

    name: str
    symbol: Symbol
    data: bytes
    """Exactly the bytes a decoder must return (GS1: element strings with 0x1D, no leading FNC1)."""
    gs1: bool = False


@dataclass(frozen=True, slots=True)
class BenchFrame:
    """One frame: a payload drawn under a condition."""

    payload: Payload
    condition: str
    variant: int
    image: Frame = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.payload.name}/{self.condition}/{self.variant}"

    @property
    def digest(self) -> str:
        """Hash of the pixels, to check that several decoders saw the very same frame."""
        h = hashlib.sha256(repr(self.image.shape).encode())
        h.update(self.image.tobytes())
        return h.hexdigest()[:16]


def gtin_check_digit(body: str) -> str:
    """GS1 check digit of a GTIN without it (weights 3,1,3... from the rightmost digit)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def nir_key(nir13: str) -> str:
    """Two-digit key of a French NIR (INS matricule): 97 - (NIR mod 97)."""
    return f"{97 - int(nir13) % 97:02d}"


def _token(rng: np.random.Generator, length: int) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=length))


def counter_payloads(seed: int = 2024) -> list[Payload]:
    """The codes read at the counter, with realistic shapes and lengths."""
    rng = np.random.default_rng(seed)
    gtin = "0340093000012"  # GTIN-14 of a French medicine (CIP13 3400930000120 behind a 0)
    gs1 = f"01{gtin}{gtin_check_digit(gtin)}17270500100AB12{GS}21XYZ123"
    nir = "2850375112004"
    ins = (
        f"IS01{'0' * 22}S1{nir}{nir_key(nir)}S21.2.250.1.213.1.4.8{GS}"
        f"S3MARIE ANNE{GS}S4DUPONT{GS}S5FS612-03-1985S775112"
    )
    # 2D-DOC: header (version, country, CA, certificate, dates, type), fields separated by GS,
    # then US (0x1F) and a base32 signature.
    doc_fields = f"10DUPONT MARIE{GS}1221 RUE DES LILAS{GS}2475011{GS}25PARIS{GS}16MME{GS}"
    doc = "DC04FR00FPE3" + "1E2A1E2B" + "01" + "FR" + doc_fields + "\x1f"
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    doc += "".join(b32[i] for i in rng.integers(0, 32, size=200 - len(doc)))
    qr = "https://qr.example.fr/o/" + _token(rng, 76)
    return [
        Payload("gs1-box", Symbol.DATAMATRIX, gs1.encode("ascii"), gs1=True),
        Payload("ins", Symbol.DATAMATRIX, ins.encode("ascii")),
        Payload("2d-doc", Symbol.DATAMATRIX, doc.encode("ascii")),
        Payload("qr-opaque", Symbol.QR, qr.encode("ascii")),
    ]


def draw_symbol(payload: Payload, scale: int) -> Frame:
    """The code alone, with its quiet zone, black on white, ``scale`` px per module (ASCII payloads)."""
    # Text, not bytes: given bytes, zxing-cpp adds an ECI designator that libdmtx then returns in the
    # data (a leading b"01\n"), which is not how these codes are printed.
    text = payload.data.decode("ascii")
    if payload.symbol is Symbol.QR:
        return render(text, Symbol.QR, gs1=payload.gs1, scale=scale)
    content = biip.gs1_messages.GS1Message.parse(text).as_hri() if payload.gs1 else text
    barcode = zxingcpp.create_barcode(content, zxingcpp.BarcodeFormat.DataMatrix, gs1=payload.gs1, force_square=True)
    return np.asarray(barcode.to_image(scale=scale), dtype=np.uint8)


def _module_scale(payload: Payload) -> int:
    side = int(max(draw_symbol(payload, 1).shape))
    return max(3, CODE_SIDE_PX // side)


def _seed_for(seed: int, key: str) -> int:
    return zlib.crc32(key.encode(), seed & 0xFFFFFFFF)


def make_frame(payload: Payload, condition: str, variant: int = 0, seed: int = 2024) -> BenchFrame:
    """One 640×480 frame of ``payload`` under ``condition`` (one of :data:`CONDITIONS`)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}")
    rng = np.random.default_rng(_seed_for(seed, f"{payload.name}/{condition}/{variant}"))
    code = draw_symbol(payload, _module_scale(payload))
    h, w = code.shape
    # Place the code near the middle, shifted per variant so that variants differ.
    cx = WIDTH // 2 + int(rng.integers(-60, 61)) if variant else WIDTH // 2
    cy = HEIGHT // 2 + int(rng.integers(-40, 41)) if variant else HEIGHT // 2
    canvas = Image.new("L", (WIDTH, HEIGHT), BACKGROUND)
    canvas.paste(Image.fromarray(code), (cx - w // 2, cy - h // 2))
    if condition in ("rot15", "rot40"):
        angle = float(condition.removeprefix("rot"))
        canvas = canvas.rotate(angle, resample=Image.Resampling.BILINEAR, center=(cx, cy), fillcolor=BACKGROUND)
    elif condition in BLURS:
        canvas = canvas.filter(ImageFilter.GaussianBlur(BLURS[condition]))
    image = np.asarray(canvas, dtype=np.uint8)
    if condition == "lowcontrast":
        dark, light = LOW_CONTRAST
        grey = dark + image.astype(np.float64) * ((light - dark) / 255.0)
        grey += rng.normal(0.0, NOISE_SIGMA, size=grey.shape)
        image = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return BenchFrame(payload, condition, variant, np.ascontiguousarray(image))


def make_frames(
    payloads: Sequence[Payload] | None = None,
    conditions: Sequence[str] = CONDITIONS,
    variants: int = 1,
    seed: int = 2024,
) -> list[BenchFrame]:
    """Every payload under every condition, ``variants`` placements each (variant 0 is centred)."""
    chosen = counter_payloads(seed) if payloads is None else list(payloads)
    return [
        make_frame(payload, condition, variant, seed)
        for payload in chosen
        for condition in conditions
        for variant in range(variants)
    ]
