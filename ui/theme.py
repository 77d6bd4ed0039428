"""Colours and type sizes of the kiosk: high contrast (WCAG AA or better for every text on its background).

Sizes are fractions of the touch target ``u`` (15 mm in pixels), so text and buttons keep their
physical size from a 7" to a 10" panel.
"""

from __future__ import annotations

BACKGROUND = (1.0, 1.0, 1.0, 1.0)
TEXT = (0.07, 0.07, 0.09, 1.0)
MUTED = (0.25, 0.27, 0.30, 1.0)  # 10:1 on white
PRIMARY = (0.0, 0.40, 0.22, 1.0)  # pharmacy green, 7.5:1 with white text
PRIMARY_DOWN = (0.0, 0.27, 0.15, 1.0)
SECONDARY = (0.16, 0.20, 0.28, 1.0)  # slate, 13:1 with white text
SECONDARY_DOWN = (0.05, 0.08, 0.13, 1.0)
DANGER = (0.69, 0.0, 0.13, 1.0)  # 7:1 with white text
DANGER_DOWN = (0.48, 0.0, 0.09, 1.0)
OK_BANNER = (0.0, 0.40, 0.22, 1.0)
ERROR_BANNER = (0.69, 0.0, 0.13, 1.0)
WARNING = (1.0, 0.76, 0.03, 1.0)  # amber, black text on it (12:1)
GAP = (1.0, 0.89, 0.55, 1.0)  # discrepancy highlight, black text
ROW = (0.93, 0.95, 0.96, 1.0)
PANEL = (0.96, 0.97, 0.98, 1.0)
HEADER = (0.0, 0.30, 0.17, 1.0)
WHITE = (1.0, 1.0, 1.0, 1.0)

BUTTON_COLORS = {
    "primary": (PRIMARY, PRIMARY_DOWN),
    "secondary": (SECONDARY, SECONDARY_DOWN),
    "danger": (DANGER, DANGER_DOWN),
}

BODY = 0.34
"""Body text, in touch targets: 27 px on the 7" panel, about 5 mm."""
SMALL = 0.28
TITLE = 0.5
BANNER = 0.4
"""A warning the pharmacist must not miss (the bill a stop may have hidden from its patient)."""
HUGE = 1.0
