"""What a key press types on each layout, as xkb says (no simulator: key codes written by hand)."""

from __future__ import annotations

import evdev.ecodes as ecodes
import pytest

from drivers import keymaps
from drivers.keymaps import (
    KEY_CAPSLOCK,
    KEY_LEFTALT,
    KEY_LEFTCTRL,
    KEY_LEFTSHIFT,
    KEY_RIGHTALT,
    KEY_RIGHTBRACE,
    KEY_SPACE,
    Chord,
    KeymapError,
    KeyTranslator,
)

KEY_1, KEY_2, KEY_0, KEY_MINUS = 2, 3, 11, 12
KEY_Q, KEY_W, KEY_E, KEY_Y, KEY_LEFTBRACE = 16, 17, 18, 21, 26
KEY_A, KEY_SEMICOLON = 30, 39


def typed(translator: KeyTranslator, *chords: tuple[int, ...]) -> str:
    """Press each chord (modifiers first, key last), release it, and return the text typed."""
    out = []
    for chord in chords:
        for code in chord:
            stroke = translator.feed(code, 1)
            if stroke is not None and code == chord[-1]:
                out.append(stroke.text)
        for code in reversed(chord):
            translator.feed(code, 0)
    return "".join(out)


def test_constants_are_the_kernel_key_codes() -> None:
    for name in ("EV_SYN", "EV_KEY", "SYN_REPORT", "SYN_DROPPED", "KEY_TAB", "KEY_ENTER", "KEY_KPENTER"):
        assert getattr(keymaps, name) == getattr(ecodes, name), name
    for name in ("KEY_RIGHTBRACE", "KEY_LEFTSHIFT", "KEY_LEFTALT", "KEY_RIGHTALT", "KEY_CAPSLOCK", "KEY_F8"):
        assert getattr(keymaps, name) == getattr(ecodes, name), name
    assert {getattr(ecodes, f"KEY_KP{d}"): d for d in range(10)} == keymaps.KEYPAD_DIGITS


class TestFrenchAzerty:
    def test_digits_need_shift(self) -> None:
        fr = KeyTranslator("fr")
        assert typed(fr, (KEY_1,), (KEY_2,), (KEY_0,)) == "&éà"
        assert typed(fr, (KEY_LEFTSHIFT, KEY_1), (KEY_LEFTSHIFT, KEY_2), (KEY_LEFTSHIFT, KEY_0)) == "120"

    def test_letters_are_azerty(self) -> None:
        fr = KeyTranslator("fr")
        assert typed(fr, (KEY_Q,), (KEY_W,), (KEY_A,), (KEY_SEMICOLON,)) == "azqm"
        assert typed(fr, (KEY_LEFTSHIFT, KEY_Q)) == "A"

    def test_altgr_gives_the_third_level(self) -> None:
        fr = KeyTranslator("fr")
        assert typed(fr, (KEY_RIGHTALT, KEY_0)) == "@"
        assert typed(fr, (KEY_RIGHTALT, KEY_MINUS)) == "]"

    def test_altgr_is_not_alt(self) -> None:
        fr = KeyTranslator("fr")
        fr.feed(KEY_RIGHTALT, 1)
        assert not fr.alt_held
        fr.feed(KEY_RIGHTALT, 0)
        fr.feed(KEY_LEFTALT, 1)
        assert fr.alt_held

    def test_caps_lock_capitalises_letters_but_not_digits(self) -> None:
        fr = KeyTranslator("fr")
        typed(fr, (KEY_CAPSLOCK,))
        assert fr.caps_lock
        assert typed(fr, (KEY_Q,), (KEY_1,)) == "A&"
        assert typed(fr, (KEY_LEFTSHIFT, KEY_Q), (KEY_LEFTSHIFT, KEY_1)) == "a1"
        typed(fr, (KEY_CAPSLOCK,))
        assert not fr.caps_lock
        assert typed(fr, (KEY_Q,)) == "a"

    def test_dead_circumflex_then_space_or_letter(self) -> None:
        fr = KeyTranslator("fr")
        assert typed(fr, (KEY_LEFTBRACE,)) == ""
        assert typed(fr, (KEY_SPACE,)) == "^"
        assert typed(fr, (KEY_LEFTBRACE,), (KEY_E,)) == "ê"

    def test_ctrl_right_bracket_is_group_separator(self) -> None:
        fr = KeyTranslator("fr")
        fr.feed(KEY_LEFTCTRL, 1)
        fr.feed(KEY_RIGHTALT, 1)
        stroke = fr.feed(KEY_MINUS, 1)
        assert stroke is not None
        assert (stroke.text, stroke.ctrl) == ("\x1d", True)


def test_us_qwerty() -> None:
    us = KeyTranslator("us")
    assert typed(us, (KEY_1,), (KEY_Q,), (KEY_LEFTSHIFT, KEY_2)) == "1q@"
    assert typed(us, (KEY_LEFTCTRL, KEY_RIGHTBRACE)) == "\x1d"


def test_belgian_azerty() -> None:
    be = KeyTranslator("be")
    assert typed(be, (KEY_1,), (KEY_LEFTSHIFT, KEY_1), (KEY_Q,)) == "&1a"
    assert typed(be, (KEY_RIGHTALT, KEY_2)) == "@"


def test_swiss_qwertz_and_its_french_variant() -> None:
    ch = KeyTranslator("ch")
    assert typed(ch, (KEY_1,), (KEY_Y,), (KEY_RIGHTALT, KEY_2), (KEY_LEFTBRACE,)) == "1z@ü"
    ch_fr = KeyTranslator("ch", "fr")
    assert typed(ch_fr, (KEY_1,), (KEY_Y,), (KEY_LEFTBRACE,)) == "1zè"


def test_autorepeat_types_again_but_modifiers_do_not_stack() -> None:
    fr = KeyTranslator("fr")
    assert fr.feed(KEY_LEFTSHIFT, 1) is not None
    assert fr.feed(KEY_LEFTSHIFT, 2) is None  # a held modifier repeats nothing
    down = fr.feed(KEY_Q, 1)
    again = fr.feed(KEY_Q, 2)
    assert down is not None and again is not None
    assert (down.text, down.repeat, again.text, again.repeat) == ("A", False, "A", True)
    fr.feed(KEY_Q, 0)
    fr.feed(KEY_LEFTSHIFT, 0)  # one release undoes the one press: Shift is no longer held
    assert typed(fr, (KEY_Q,)) == "a"


def test_release_of_a_key_never_pressed_is_ignored() -> None:
    fr = KeyTranslator("fr")
    assert fr.feed(KEY_LEFTSHIFT, 0) is None  # held when the device was grabbed
    assert typed(fr, (KEY_LEFTSHIFT, KEY_1)) == "1"


def test_reset_forgets_held_modifiers_and_locks() -> None:
    fr = KeyTranslator("fr")
    typed(fr, (KEY_CAPSLOCK,))
    fr.feed(KEY_LEFTSHIFT, 1)
    fr.reset()
    assert not fr.caps_lock and not fr.is_active("Shift")
    assert typed(fr, (KEY_Q,)) == "a"


def test_unknown_layout_is_a_clear_error() -> None:
    with pytest.raises(KeymapError, match="'xx'"):
        KeyTranslator("xx")
    with pytest.raises(KeymapError, match="nope"):
        KeyTranslator("fr", "nope")


def test_chord_for_finds_the_keys_that_type_a_character() -> None:
    fr = KeyTranslator("fr")
    assert fr.chord_for("1") == (Chord(KEY_1, shift=True),)
    assert fr.chord_for("@") == (Chord(KEY_0, altgr=True),)
    assert fr.chord_for("a") == (Chord(KEY_Q),)
    assert fr.chord_for("a", caps_lock=True) == (Chord(KEY_Q, shift=True),)
    assert fr.chord_for("ê") == (Chord(KEY_LEFTBRACE), Chord(KEY_E))
    assert fr.chord_for("\x1d") is None
    assert KeyTranslator("us").chord_for("@") == (Chord(KEY_2, shift=True),)
