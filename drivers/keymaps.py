"""Key codes to text through xkbcommon keymaps, the way a desktop would type them.

A keyboard-wedge scanner does not send characters: it presses keys on a keyboard of a given
layout. On a French AZERTY layout a scanner types the digit ``1`` as Shift + the key that
types ``&`` unshifted, and ``@`` as AltGr + the ``à 0`` key. :class:`KeyTranslator` keeps an
xkb state (modifiers depressed, locks such as CapsLock latched) fed with evdev key events, and
returns the text each key press produces on the configured layout, composing dead keys
(``^`` then space is ``^``; ``^`` then ``e`` is ``ê``) the way the desktop would.

Evdev key codes are the kernel's (``linux/input-event-codes.h``, a stable ABI); xkb keycodes
are those plus 8. The constants below are the few this package needs, so that the logic runs
(and tests) without the evdev package.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import Any

from xkbcommon import xkb

log = logging.getLogger(__name__)

XKB_OFFSET = 8
"""xkb keycode = evdev keycode + 8 (the X11 legacy)."""

# Event types and codes (linux/input-event-codes.h).
EV_SYN = 0x00
EV_KEY = 0x01
EV_MSC = 0x04
SYN_REPORT = 0
SYN_DROPPED = 3

KEY_TAB = 15
KEY_RIGHTBRACE = 27
"""The key that types ``]`` on a US keyboard (HID usage 0x30)."""
KEY_ENTER = 28
KEY_LEFTCTRL = 29
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_SPACE = 57
KEY_CAPSLOCK = 58
KEY_F1 = 59
KEY_F8 = 66
KEY_NUMLOCK = 69
KEY_KPENTER = 96
KEY_RIGHTCTRL = 97
KEY_RIGHTALT = 100
"""AltGr on layouts that have one (ISO_Level3_Shift); plain Alt_R on ``us``."""

KEYPAD_DIGITS: dict[int, int] = {82: 0, 79: 1, 80: 2, 81: 3, 75: 4, 76: 5, 77: 6, 71: 7, 72: 8, 73: 9}
"""Evdev code of KEY_KP0..KEY_KP9 -> digit, whatever NumLock says (Alt codes use them)."""

_KEYPAD_CODES = frozenset({*KEYPAD_DIGITS, 55, 74, 78, 83, 96, 98, 117, 121})


class KeyValue(IntEnum):
    """``input_event.value`` of an EV_KEY event."""

    UP = 0
    DOWN = 1
    REPEAT = 2


class KeymapError(ValueError):
    """A layout/variant that xkb cannot compile (unknown name, missing xkb-data)."""


@dataclass(frozen=True, slots=True)
class KeyStroke:
    """What one key press (or autorepeat) produced."""

    code: int
    """Evdev key code."""
    keysym: str
    """xkb keysym name (``a``, ``at``, ``Return``, ``F8``, ``KP_Insert``, ``dead_circumflex``)."""
    text: str
    """Text typed, after dead-key composition; empty for modifiers, function keys, dead keys."""
    ctrl: bool
    """Control was held (xkb has already applied the Control transformation: Ctrl+] is ``\\x1d``)."""
    alt: bool
    """Alt (xkb Mod1) was held. AltGr is not Alt: it selects level 3 and is already in ``text``."""
    repeat: bool


@dataclass(frozen=True, slots=True)
class Chord:
    """The keys to hold and press to type one character: ``code`` with optional Shift and AltGr."""

    code: int
    shift: bool = False
    altgr: bool = False


# Dead keysym -> (character typed when followed by space, combining mark).
_DEAD_KEYS: dict[str, tuple[str, str]] = {
    "dead_grave": ("`", "\u0300"),
    "dead_acute": ("´", "\u0301"),
    "dead_circumflex": ("^", "\u0302"),
    "dead_tilde": ("~", "\u0303"),
    "dead_macron": ("¯", "\u0304"),
    "dead_breve": ("˘", "\u0306"),
    "dead_abovedot": ("˙", "\u0307"),
    "dead_diaeresis": ("¨", "\u0308"),
    "dead_abovering": ("˚", "\u030a"),
    "dead_doubleacute": ("˝", "\u030b"),
    "dead_caron": ("ˇ", "\u030c"),
    "dead_cedilla": ("¸", "\u0327"),
    "dead_ogonek": ("˛", "\u0328"),
}


def _compose(dead: str, text: str) -> str:
    spacing, combining = _DEAD_KEYS[dead]
    if text == " ":
        return spacing
    composed = unicodedata.normalize("NFC", text + combining)
    return composed if len(composed) == 1 else spacing + text


def keysym_exists(name: str) -> bool:
    """Whether ``name`` is an xkb keysym name (case matters: ``F8``, ``Return``, ``KP_Enter``)."""
    return bool(xkb.keysym_from_name(name))


def _xkb_log(_context: object, level: int, message: str) -> None:
    log.debug("xkbcommon[%s]: %s", level, message.rstrip())


@cache
def _compile(layout: str, variant: str | None, model: str | None, options: str | None) -> Any:
    context = xkb.Context(no_environment_names=True)
    context.set_log_fn(_xkb_log)
    try:
        return context.keymap_new_from_names(layout=layout, variant=variant, model=model, options=options)
    except xkb.XKBKeymapCreationFailure as exc:
        raise KeymapError(
            f"xkb cannot compile keyboard layout {layout!r} variant {variant!r}"
            " (is the name right and xkb-data installed?)"
        ) from exc


_EFFECTIVE = xkb.XKB_STATE_MODS_EFFECTIVE


class KeyTranslator:
    """Evdev key events in, typed text out, on one xkb layout (``fr`` by default).

    Feed every EV_KEY event (value 1 down, 0 up, 2 autorepeat) in order, modifiers included:
    Shift, AltGr, Ctrl and Alt are tracked as held while down, CapsLock/NumLock as locks, all
    in xkb's own state. A release of a key never seen pressed (held when the device was
    grabbed) is ignored so modifiers cannot get stuck. Not thread-safe: one per device.
    """

    def __init__(
        self,
        layout: str = "fr",
        variant: str | None = None,
        *,
        model: str | None = None,
        options: str | None = None,
    ) -> None:
        self.layout = layout
        self.variant = variant or None
        self._keymap: Any = _compile(layout, self.variant, model, options)
        self._state: Any = self._keymap.state_new()
        self._down: set[int] = set()
        self._dead: str | None = None
        self._chords: dict[bool, dict[str, tuple[Chord, ...]]] = {}

    def reset(self) -> None:
        """Forget every held key, lock and pending dead key (device lost, events dropped)."""
        self._state = self._keymap.state_new()
        self._down.clear()
        self._dead = None

    def is_active(self, modifier: str) -> bool:
        """Whether an xkb modifier (``Shift``, ``Lock``, ``Control``, ``Mod1``...) is in effect."""
        return bool(self._state.mod_name_is_active(modifier, _EFFECTIVE))

    @property
    def alt_held(self) -> bool:
        return self.is_active("Mod1")

    @property
    def caps_lock(self) -> bool:
        return self.is_active("Lock")

    def feed(self, code: int, value: int) -> KeyStroke | None:
        """Update the state with one EV_KEY event; return the stroke for a press or a repeat.

        Releases return None. A repeat of a modifier (which xkb says does not repeat) is None.
        """
        key = code + XKB_OFFSET
        if value == KeyValue.UP:
            if code in self._down:
                self._down.discard(code)
                self._state.update_key(key, xkb.XKB_KEY_UP)
            return None
        if value == KeyValue.REPEAT or (value == KeyValue.DOWN and code in self._down):
            if code not in self._down or not self._keymap.key_repeats(key):
                return None
            return self._stroke(code, repeat=True)
        if value != KeyValue.DOWN:
            return None
        # Read the symbol before the key itself changes the state (xkb convention).
        stroke = self._stroke(code, repeat=False)
        self._down.add(code)
        self._state.update_key(key, xkb.XKB_KEY_DOWN)
        return stroke

    def _stroke(self, code: int, *, repeat: bool) -> KeyStroke:
        key = code + XKB_OFFSET
        sym = self._state.key_get_one_sym(key)
        name = str(xkb.keysym_get_name(sym)) if sym else "NoSymbol"
        text = str(self._state.key_get_string(key)) if sym else ""
        ctrl = self.is_active("Control")
        if name in _DEAD_KEYS and not ctrl:  # Ctrl + a dead key is a control chord, not an accent
            pending, self._dead = self._dead, name
            text = _DEAD_KEYS[pending][0] if pending is not None else ""
        elif self._dead is not None and text and text.isprintable():
            text = _compose(self._dead, text)
            self._dead = None
        return KeyStroke(
            code=code,
            keysym=name,
            text=text,
            ctrl=ctrl,
            alt=self.alt_held,
            repeat=repeat,
        )

    def chord_for(self, char: str, *, caps_lock: bool = False) -> tuple[Chord, ...] | None:
        """The key presses that type ``char`` on this layout, or None if it cannot be typed.

        One chord for most characters; two for those typed through a dead key (dead key then
        space, or dead key then the base letter). Prefers the fewest modifiers and the main
        block over the keypad. Used to check a configured character and to simulate scanners.
        """
        table = self._chords.get(caps_lock)
        if table is None:
            table = self._chords[caps_lock] = self._chord_table(caps_lock)
        return table.get(char)

    def _chord_table(self, caps_lock: bool) -> dict[str, tuple[Chord, ...]]:
        max_code = int(self._keymap.max_keycode()) - XKB_OFFSET
        codes = sorted(range(1, min(max_code, 255) + 1), key=lambda c: (c in _KEYPAD_CODES, c))
        direct: dict[str, tuple[Chord, ...]] = {}
        dead: dict[str, Chord] = {}
        for shift, altgr in ((False, False), (True, False), (False, True), (True, True)):
            for code in codes:
                state = self._keymap.state_new()
                if caps_lock:
                    state.update_key(KEY_CAPSLOCK + XKB_OFFSET, xkb.XKB_KEY_DOWN)
                    state.update_key(KEY_CAPSLOCK + XKB_OFFSET, xkb.XKB_KEY_UP)
                for held, mod_code in ((shift, KEY_LEFTSHIFT), (altgr, KEY_RIGHTALT)):
                    if held:
                        state.update_key(mod_code + XKB_OFFSET, xkb.XKB_KEY_DOWN)
                sym = state.key_get_one_sym(code + XKB_OFFSET)
                if not sym:
                    continue
                name = str(xkb.keysym_get_name(sym))
                chord = Chord(code, shift, altgr)
                if name in _DEAD_KEYS:
                    dead.setdefault(name, chord)
                    continue
                text = str(state.key_get_string(code + XKB_OFFSET))
                if len(text) == 1 and text not in direct:
                    direct[text] = (chord,)
        table = dict(direct)
        space = direct.get(" ")
        for name, dead_chord in dead.items():
            spacing = _DEAD_KEYS[name][0]
            if space is not None and spacing not in table:
                table[spacing] = (dead_chord, *space)
            for base, base_chords in direct.items():
                if not base.isalpha():
                    continue
                composed = unicodedata.normalize("NFC", base + _DEAD_KEYS[name][1])
                if len(composed) == 1 and composed not in table:
                    table[composed] = (dead_chord, *base_chords)
        return table
