"""Kiosk display settings: resolution, orientation, density, and the timings of the patient screen.

Touch targets are sized in millimetres and turned into pixels from the panel's density, because a
finger does not get smaller on a denser screen: 15 mm is about 79 px on the official 7" 800×480
panel (133 dpi) and 88 px on a 10.1" 1280×800 one (149 dpi).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

MM_PER_INCH = 25.4


@dataclass(frozen=True)
class KioskConfig:
    width: int = 800
    """Panel pixels along its long side (the window is turned for portrait)."""
    height: int = 480
    orientation: str = "landscape"
    """``landscape`` or ``portrait``."""
    diagonal_in: float = 7.0
    """Panel diagonal, used to compute the density when ``dpi`` is not given."""
    dpi: float | None = None
    touch_mm: float = 15.0
    """Smallest touch target, in millimetres."""
    fullscreen: bool = True
    idle_tick_s: float = 1.0
    """How often the UI sends Tick to the core (the core decides the idle timeout)."""
    thanks_s: float = 8.0
    """How long the thank-you screen and its receipt stay before the attract screen."""
    banner_s: float = 8.0
    """How long a message stays on screen."""
    waiting_after_s: float = 0.25
    """A call shorter than this shows no waiting screen (no flicker on fast answers)."""
    expected_call_s: float = 2.0
    """The teleservice adapter's timeout: the progress bar fills toward it."""
    panel_lock_s: float = 90.0
    """The pharmacist panel locks itself after this long without a touch."""

    @property
    def window_size(self) -> tuple[int, int]:
        long, short = max(self.width, self.height), min(self.width, self.height)
        return (short, long) if self.orientation == "portrait" else (long, short)

    @property
    def density(self) -> float:
        """Pixels per inch: configured, or from the diagonal."""
        if self.dpi is not None:
            return self.dpi
        return math.hypot(self.width, self.height) / self.diagonal_in

    @property
    def touch_px(self) -> int:
        """The smallest touch target in pixels."""
        return round(self.touch_mm / MM_PER_INCH * self.density)

    @property
    def unit_px(self) -> int:
        """The layout unit: the touch target, grown on larger panels so text and buttons fill them.

        A sixth of the short side (80 px at 480, 133 px at 800) and never below the touch target.
        """
        return max(self.touch_px, round(min(self.window_size) / 6))

    @classmethod
    def preset(cls, name: str) -> KioskConfig:
        """The two common Raspberry Pi touchscreens: ``800x480`` (7") and ``1280x800`` (10.1")."""
        if name == "800x480":
            return cls(width=800, height=480, diagonal_in=7.0)
        if name == "1280x800":
            return cls(width=1280, height=800, diagonal_in=10.1)
        raise ValueError(f"unknown display preset {name!r} (800x480 or 1280x800)")

    @classmethod
    def from_toml(cls, path: Path) -> KioskConfig:
        """The ``[kiosk]`` table of a TOML file; unknown keys are an error, not a silent typo."""
        table: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8")).get("kiosk", {})
        return cls().with_options(**table)

    def with_options(self, **options: Any) -> KioskConfig:
        known = {f.name for f in fields(self)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown kiosk settings: {', '.join(sorted(unknown))}")
        if options.get("orientation", self.orientation) not in ("landscape", "portrait"):
            raise ValueError("orientation must be landscape or portrait")
        return replace(self, **options)
