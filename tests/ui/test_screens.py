"""Every screen at 800×480 and 1280×800 (and portrait), offscreen: what a patient sees must be there,
inside the screen, with finger-sized buttons in the kiosk's colours. The PNGs stay in the tmp folder."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.ui.conftest import finish_windowed, start_windowed
from tests.ui.states import DP_LABELS, STATES
from ui import theme

DISPLAYS = {
    "800x480": ("800x480", "landscape"),
    "1280x800": ("1280x800", "landscape"),
    "480x800": ("800x480", "portrait"),
}
COLOURS = {"primary": theme.PRIMARY, "secondary": theme.SECONDARY, "danger": theme.DANGER}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process per display renders every state (side by side); the first one's watchdog is heard."""
    outs = {name: tmp_path_factory.mktemp(f"screens-{name}") for name in DISPLAYS}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(outs["800x480"] / "notify.sock"))
    sock.settimeout(0.05)
    messages: list[str] = []
    stop = threading.Event()
    listener = threading.Thread(target=_listen, args=(sock, messages, stop), daemon=True)
    listener.start()
    try:
        running = {}
        for name, (preset, orientation) in DISPLAYS.items():
            heard = name == "800x480"
            env = {"NOTIFY_SOCKET": str(outs[name] / "notify.sock"), "WATCHDOG_USEC": "200000"} if heard else {}
            running[name] = start_windowed("screens", outs[name], preset, orientation, env=env)
        results = {name: finish_windowed(process, outs[name], timeout=80) for name, process in running.items()}
    finally:
        stop.set()
        listener.join(2)
        sock.close()
    results["800x480"]["notify"] = messages
    return results


def _listen(sock: socket.socket, messages: list[str], stop: threading.Event) -> None:
    """systemd's side of sd_notify: read every datagram as it comes."""
    while not stop.is_set():
        try:
            messages.append(sock.recv(64).decode())
        except TimeoutError:
            continue


def _state(rendered: dict[str, Any], display: str, name: str) -> dict[str, Any]:
    return next(s for s in rendered[display]["states"] if s["name"] == name)


CASES = [(display, state) for display in DISPLAYS for state in STATES]


@pytest.mark.parametrize(("display", "state"), CASES, ids=[f"{d}-{s.name}" for d, s in CASES])
def test_screen_shows_its_state(rendered: dict[str, Any], display: str, state: Any) -> None:
    facts = _state(rendered, display, state.name)
    width, height = facts["window"]
    assert (width, height) == ((480, 800) if display == "480x800" else tuple(map(int, display.split("x"))))
    assert facts["screen"] == state.screen
    assert facts["panel_open"] == (state.panel is not None)
    # the text is visible through the widget tree
    assert any(state.expect_text in text for text in facts["texts"]), facts["texts"]
    # nothing drawn outside the screen, no text cut by its box
    assert facts["outside"] == []
    assert facts["overflow"] == []
    # finger-sized buttons (15 mm) inside the screen
    touch = rendered[display]["touch_px"]
    for button in facts["buttons"]:
        x, y, w, h = button["box"]
        assert w >= touch - 1 and h >= touch - 1, button
        assert x >= -1 and y >= -1 and x + w <= width + 1 and y + h <= height + 1, button
    # the button's colour at its place in the picture
    if state.button is not None:
        found = [b for b in facts["buttons"] if b["intent"] == state.button]
        assert found, f"no {state.button} button: {[b['intent'] for b in facts['buttons']]}"
        x, y, w, h = found[0]["box"]
        image = Image.open(Path(facts["png"])).convert("RGB")
        assert image.size == (width, height)
        pixel = image.getpixel((x + 4, height - 1 - (y + h // 2)))
        expected = tuple(round(c * 255) for c in COLOURS[state.colour][:3])
        assert all(abs(a - b) <= 3 for a, b in zip(pixel, expected, strict=True)), (pixel, expected)


def test_no_pin_digit_is_ever_shown(rendered: dict[str, Any]) -> None:
    for display in DISPLAYS:
        facts = _state(rendered, display, "panel-pin")
        assert "••" in facts["texts"]
        assert not any(text in ("24", "2 4") for text in facts["texts"])


def test_touch_targets_follow_the_display_density(rendered: dict[str, Any]) -> None:
    assert rendered["800x480"]["touch_px"] == 79  # 15 mm on a 7" 800×480 panel (133 dpi)
    assert rendered["1280x800"]["touch_px"] == 88  # 15 mm on a 10.1" 1280×800 panel (149 dpi)


def test_the_watchdog_is_pinged_from_the_kivy_clock(rendered: dict[str, Any]) -> None:
    notify = rendered["800x480"]["notify"]
    assert notify[0] == "READY=1"
    assert notify.count("WATCHDOG=1") >= 5  # every 0.1 s (half of WATCHDOG_USEC) for several seconds
    assert rendered["800x480"]["watchdog_pings"] == notify.count("WATCHDOG=1")


def test_the_last_claims_read_at_arms_length_with_the_cut_off_one_first(rendered: dict[str, Any]) -> None:
    for display in DISPLAYS:
        texts = _state(rendered, display, "panel-claims")["texts"]
        rows = [text for text in texts if text.startswith("[b]N° ")]
        assert rows[0].startswith("[b]N° 12[/b]   11:02   M. D.\n"), rows
        assert "Dernières factures" in texts
        # the panel covers the patient's screen: the patients of past bills by their initials only
        assert not any(name in text for text in texts for name in ("DURAND", "Marie", "MARTIN", "PETIT", "Nadia"))


def test_the_stop_is_never_mentioned_on_the_patient_screen(rendered: dict[str, Any]) -> None:
    for display in DISPLAYS:
        texts = _state(rendered, display, "attract-after-stop")["texts"]
        assert not any("avant l'arrêt" in text for text in texts), texts


PATIENT_BUTTONS = {"open_panel", "cancel", "continue"}
"""All a patient may touch on a screen that waits for the pharmacist: the panel (behind its login),
Annuler, and Continuer/Contrôler."""


@pytest.mark.parametrize(
    "name", ["identity-choices", "identity-traits", "identity-qualification", "prescription", "offline", "control"]
)
def test_the_patient_screens_offer_no_professional_act(rendered: dict[str, Any], name: str) -> None:
    for display in DISPLAYS:
        facts = _state(rendered, display, name)
        assert not facts["panel_open"]
        assert {b["intent"] for b in facts["buttons"]} <= PATIENT_BUTTONS, facts["buttons"]
        texts = " ".join(facts["texts"])
        assert "Le pharmacien" in texts, texts
        for act in ("Pièce vérifiée", "Pièce d'identité présentée", "Confirmer", "Écarter", "Valider"):
            assert act not in texts, (act, texts)


def test_the_patient_reads_for_whom_the_prescription_is(rendered: dict[str, Any]) -> None:
    for display in DISPLAYS:
        texts = _state(rendered, display, "prescription")["texts"]
        assert "Au nom de Marie DURAND, 12/03/1968" in texts
        assert "Ordonnance du 10/06/2026, Dr Hélène VIDAL" in texts
        assert "Le pharmacien vérifie votre ordonnance…" in texts


@pytest.mark.parametrize("name", ["rights-dp-consulted", "prescription-dp-consulted"])
def test_the_patient_screens_never_show_the_dossier_pharmaceutique(rendered: dict[str, Any], name: str) -> None:
    """The DP was consulted and the pharmacist is still logged in: the panel (closed) holds its list,
    the patient's screen shows nothing of it, not even the count the DP answered."""
    for display in DISPLAYS:
        facts = _state(rendered, display, name)
        assert not facts["panel_open"] and facts["dp_rows"] == 3
        texts = " ".join(facts["texts"])
        for label in DP_LABELS:
            assert label not in texts, (display, label, texts)
        assert "dp_consult" not in {b["intent"] for b in facts["buttons"]}


def test_the_panel_lists_the_dossier_pharmaceutique(rendered: dict[str, Any]) -> None:
    for display in DISPLAYS:
        texts = " ".join(_state(rendered, display, "panel-dp")["texts"])
        for label in DP_LABELS:
            assert label in texts, (display, label)
        assert "1 × CETIRIZINE ARROW 10 mg cp B/7" in texts and "2 × OMEPRAZOLE MYLAN 20 mg gél B/28" in texts


def _intents(facts: dict[str, Any]) -> set[str]:
    return {b["intent"] for b in facts["buttons"] if not b["disabled"]}


def test_the_panel_offers_the_documents_an_adult_may_show(rendered: dict[str, Any]) -> None:
    for display in DISPLAYS:
        intents = _intents(_state(rendered, display, "panel-document"))
        assert {"document:passeport", "document:cni", "document:titre-sejour"} <= intents
        assert {"document_absent", "document_refused", "document_contradicts"} <= intents
        assert not {"document:livret-famille", "document:acte-naissance"} & intents


def test_the_panel_offers_a_minor_the_family_record_then_the_guardians_document(rendered: dict[str, Any]) -> None:
    for display in DISPLAYS:
        minor = _intents(_state(rendered, display, "panel-document-minor"))
        assert {"document:passeport", "document:livret-famille", "document:acte-naissance"} <= minor
        assert {"document_absent", "document_refused", "document_contradicts"} <= minor
        guardian = _state(rendered, display, "panel-guardian")
        assert {"guardian:passeport", "guardian:cni", "guardian:titre-sejour", "guardian:back"} <= _intents(guardian)
        assert not any(i.startswith("document") for i in _intents(guardian))


def test_the_panel_holds_every_professional_act(rendered: dict[str, Any]) -> None:
    expected = {
        "panel-homonyms": {"choose_identity:0", "choose_identity:1"},
        "panel-traits": {"confirm_traits"},
        "panel-prescription": {"confirm_prescription", "reject_prescription", "renewal:1"},
        "panel-prescription-patient": {"accept_prescription_patient", "reject_prescription"},
        "panel-enter-lines": {"enter_line:0", "reject_prescription"},
        "panel-assign-box": {"assign_box:1", "assign_box:2", "remove_box"},
        "panel-work": {"validate", "annotate:0"},
        "panel-dp-consent": {"dp_consent", "dp_refuse"},
        "panel-dp": {"dp_consult"},
    }
    for display in DISPLAYS:
        for name, intents in expected.items():
            assert intents <= _intents(_state(rendered, display, name)), (display, name)
