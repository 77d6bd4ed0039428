"""``comptoir demo``: the kiosk against the sandbox with simulated devices.

With a display, a window opens with a developer panel beside the kiosk to inject scans and card
events. Without one (no ``$DISPLAY`` nor ``$WAYLAND_DISPLAY``), the kiosk renders offscreen, plays a
whole scripted session by touch and simulated devices, and writes a screenshot of every step and a
transcript into the output folder, then ends.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ui.config import KioskConfig
from ui.driving import KioskDriver, Script, run_script
from ui.kiosk import Kiosk

APCV_DURAND = b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"
AMC_ATTESTATION = b"AMC01\x1d88888888\x1dSP,ISANTE\x1dCSR01\x1d0012345678\x1d20260101\x1d20261231"
AMC_EXPIRED = b"AMC01\x1d66666666\x1dSP\x1d\x1dLF20240077\x1d20250101\x1d20251231"
PRESCRIPTION = b"EP7K2Q-9XWM-4TDA-LR8C"
PAPER_PRESCRIPTION = b"EP3MRT-8HJQ-2WZC-91KD"
OTHER_PATIENT_PRESCRIPTION = b"EP5WRG-2PAT-8DOB-4MIX"
"""Written for another DURAND (first name and birth date differ): the pharmacist decides."""
UNREADABLE = b"0103400930000121172705311\x1d21X"
"""A medicine box code whose lot field is cut: the reader cannot read it."""
DEMO_BOXES = (
    ("3400930000120", "DEMO0001", "2027-05-31"),
    ("3400930000120", "DEMO0002", "2027-05-31"),
    ("3400930000649", "DEMO0003", "2027-09-30"),
)
PIN = "2468"
ALICE_RPPS = "10000000007"


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@dataclass
class Transcript:
    out: Path
    lines: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.lines.append(text)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def demo_session(kiosk: Kiosk, driver: KioskDriver, transcript: Transcript) -> Script:
    """A family card (a minor's identity checked by the pharmacist), a whole apCV session with a slow
    teleservice, the patient's Dossier Pharmaceutique (consent, consult) and a prescription written for
    someone else, an offline session, an idle timeout.

    Every professional act is done on the pharmacist panel, behind a login: the patient's screen only
    says what the pharmacist is doing (``patient-*`` pictures show it as it stands under the panel).
    """
    vm, devices = kiosk.vm, kiosk.devices
    number = 0

    def note(what: str, path: Path, screen: str) -> None:
        transcript.shots.append(path)
        said = f" — « {vm.message} »" if vm.message else ""
        offline = f" [{vm.offline_text}]" if vm.offline_text else ""
        transcript.note(f"{number:02d} {what:<48} écran {screen:<18}{said}{offline}  -> {path.name}")

    def shot(what: str) -> Script:
        nonlocal number
        yield driver.settled
        yield 0.15  # a few frames: the new state is drawn
        number += 1
        where = "panel-" + _panel_page(vm) if vm.panel_open else vm.screen
        note(what, driver.screenshot(transcript.out / f"{number:02d}-{where}.png"), where)

    def patient_shot(what: str) -> Script:
        """The patient's screen under the panel the session opened for the pharmacist."""
        nonlocal number
        yield driver.settled
        yield 0.15
        number += 1
        path = driver.screenshot_patient(transcript.out / f"{number:02d}-patient-{vm.screen}.png")
        note(what, path, f"patient {vm.screen}")

    def touch(intent: str) -> Script:
        driver.touch(intent)
        yield 0.05
        yield driver.settled

    def login() -> Script:
        """The pharmacist on the panel that opened by itself: their name, then their PIN (masked)."""
        if vm.unlocked:
            return
        yield from touch("operator:alice")
        driver.type_pin(PIN)
        yield 0.05
        yield driver.settled

    yield 0.3
    yield from shot("attente d'un patient")
    devices.scan(UNREADABLE)
    yield from shot("code abîmé scanné")

    devices.insert_card("martin-family")
    yield from shot("carte Vitale familiale insérée")
    yield from touch("choose_beneficiary:2")
    yield from patient_shot("Léa choisie : le pharmacien vérifie la pièce")
    yield from shot("espace pharmacien ouvert sur l'identification")
    yield from touch("operator:alice")
    for digit in PIN[:2]:
        driver.touch(f"pin:{digit}")
    yield from shot("code personnel en cours (masqué)")
    for digit in PIN[2:]:
        driver.touch(f"pin:{digit}")
    yield from touch("pin:ok")
    yield from shot("pièce d'identité : Léa a moins de 18 ans")
    yield from touch("document:livret-famille")
    yield from shot("livret de famille : pièce du représentant")
    yield from touch("guardian:cni")
    yield from shot("identité qualifiée : droits de Léa")
    yield from touch("cancel")
    devices.remove_card()
    yield from shot("session annulée, carte retirée")

    kiosk.rig.set_fault({"service": "apcv", "latency_ms": 1500, "times": 1})
    devices.scan(APCV_DURAND)
    yield lambda: vm.waiting
    yield 0.3
    number += 1
    path = driver.screenshot(transcript.out / f"{number:02d}-waiting.png")
    note("appli carte Vitale, téléservice lent", path, "waiting")
    yield from shot("réponse de l'appli carte Vitale")
    devices.scan(AMC_ATTESTATION)
    yield from shot("attestation mutuelle scannée")
    yield from touch("open_panel")
    yield from login()
    yield from shot("dossier pharmaceutique : accord du patient ?")
    yield from touch("dp_consent")
    yield from touch("dp_consult")
    yield from shot("dossier pharmaceutique consulté (espace pharmacien)")
    yield from touch("close_panel")
    yield from shot("panneau fermé : rien du DP à l'écran du patient")
    yield from touch("open_panel")
    yield from touch("lock")
    devices.scan(OTHER_PATIENT_PRESCRIPTION)
    yield from patient_shot("ordonnance au nom d'un autre patient")
    yield from shot("espace pharmacien ouvert sur l'ordonnance")
    yield from login()
    yield from shot("ordonnance : patients comparés")
    yield from touch("reject_prescription")
    yield from shot("ordonnance écartée")
    devices.scan(PRESCRIPTION)
    yield from patient_shot("ordonnance numérique scannée")
    yield from shot("ordonnance à confirmer (espace pharmacien)")
    yield from touch("confirm_prescription")
    yield from shot("ordonnance confirmée : délivrance")
    for cip13, serial, expiry in DEMO_BOXES[:1]:
        devices.box(cip13, serial, expiry)
    yield from shot("première boîte scannée")
    for cip13, serial, expiry in DEMO_BOXES[1:]:
        devices.box(cip13, serial, expiry)
        yield driver.settled
    yield from shot("toutes les boîtes scannées")
    yield from touch("continue")
    yield from patient_shot("contrôle : le patient voit sa délivrance")
    yield from login()
    yield from touch("annotate:2")
    yield from shot("délivrance à valider, note ajoutée")
    yield from touch("validate")
    driver.type_pin(PIN)
    yield 0.05
    yield driver.settled
    yield from shot("délivrance validée : montant à régler, reçu envoyé à Mon Espace Santé")
    yield from touch("open_panel")
    yield from shot("synthèse au médecin, si le patient l'accepte (espace pharmacien)")
    yield from touch("prescriber_summary_yes")
    yield from shot("synthèse envoyée au prescripteur par MSSanté")
    yield from touch("close_panel")
    yield from touch("close")
    yield from shot("reçu")
    yield lambda: vm.screen == "attract"
    yield from shot("retour à l'accueil")
    yield from touch("open_panel")
    yield from login()
    yield from touch("recent_claims")
    yield lambda: vm.claims_open
    yield from shot("dernières factures (initiales seulement)")
    yield from touch("close_claims")
    yield from touch("lock")

    # the pharmacist logs in with her e-CPS: Pro Santé Connect asks her phone (CIBA), she validates there
    phone = kiosk.phone
    if phone is None:
        raise RuntimeError("the demo kiosk has no sandbox phone")
    yield from touch("open_panel")
    yield from touch("operator:alice")
    yield from shot("code personnel, ou e-CPS (téléphone)")
    yield from touch("ecps")
    yield lambda: bool(vm.ecps_code)
    yield from shot("e-CPS : validez sur votre téléphone")
    pending = [r for r in phone.requests() if r["status"] == "pending"]
    transcript.note(f"   téléphone d'alice : « {pending[-1]['binding_message']} » → validé")
    phone.approve(ALICE_RPPS)
    yield lambda: vm.unlocked
    yield from shot("e-CPS validée : espace pharmacien ouvert")
    yield from touch("lock")

    devices.remove_card()
    kiosk.controller.network(False)
    devices.insert_card("ald")
    yield from shot("hors ligne : carte Vitale")
    devices.scan(PAPER_PRESCRIPTION)
    yield from shot("hors ligne : le pharmacien est appelé")
    yield from login()
    yield from shot("hors ligne : saisie de l'ordonnance papier")
    yield from touch("cancel")
    kiosk.controller.network(True)
    yield driver.settled

    devices.insert_card("martin-family")
    yield driver.settled
    kiosk.clock.advance(kiosk.rig.counter.settings.idle_timeout_s + 1)
    yield lambda: vm.screen == "attract"
    yield from shot("deux minutes sans geste : écran effacé")


def _panel_page(vm: Any) -> str:
    if vm.ecps_waiting:
        return "ecps"
    if vm.pin_for:
        return "pin"
    if not vm.unlocked:
        return "login"
    return "claims" if vm.claims_open else (vm.pending_act or "work")


def run_kiosk_demo(out: Path, *, windowed: bool | None = None, preset: str = "800x480") -> int:
    """Run the kiosk demo; headless unless a display is there. Returns the exit status."""
    windowed = has_display() if windowed is None else windowed
    if not windowed:
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="comptoir-kivy-"))
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    config = KioskConfig.preset(preset).with_options(fullscreen=False, thanks_s=3.0)
    from ui.app import configure_kivy

    configure_kivy(config, extra_width=280 if windowed else 0)
    from ui.app import build_app, kivy_post
    from ui.kiosk import kiosk_against_sandbox

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("[0-9][0-9]-*.png"):
        stale.unlink()
    for stale in out.glob("counter.db*"):
        stale.unlink()
    status = {"code": 0}
    transcript = Transcript(out)
    with kiosk_against_sandbox(config, kivy_post, db_path=out / "counter.db") as kiosk:
        dev_panel = _dev_panel(kiosk) if windowed else None

        def ready(app: Any) -> None:
            if windowed:
                return
            driver = KioskDriver(app, kiosk.controller)

            def done() -> None:
                app.stop()

            def failed(error: BaseException) -> None:
                transcript.note(f"ÉCHEC : {error!r}")
                status["code"] = 1
                app.stop()

            run_script(demo_session(kiosk, driver, transcript), on_done=done, on_error=failed)

        started = time.monotonic()
        app = build_app(kiosk.vm, config, tick=kiosk.controller.tick, on_ready=ready, dev_panel=dev_panel)
        app.run()
        transcript.note(f"{len(transcript.shots)} captures d'écran en {time.monotonic() - started:.1f} s dans {out}/")
    (out / "transcript.txt").write_text("\n".join(transcript.lines) + "\n", encoding="utf-8")
    return status["code"]


def _phone(kiosk: Kiosk, *, approve: bool) -> None:
    """The professional answers on the phone: the newest pending e-CPS request (windowed demo)."""
    if kiosk.phone is None:
        return
    pending = [r for r in kiosk.phone.requests() if r["status"] == "pending"]
    if pending:
        rpps = str(pending[-1]["rpps"])
        (kiosk.phone.approve if approve else kiosk.phone.deny)(rpps)


def _dev_panel(kiosk: Kiosk) -> Any:
    """Buttons that play the devices (windowed demo only)."""
    from kivy.factory import Factory
    from kivy.lang import Builder
    from kivy.uix.boxlayout import BoxLayout

    from ui.app import KV_DIR

    class DevPanel(BoxLayout):  # type: ignore[misc]
        pass

    if "DevPanel" in Factory.classes:
        Factory.unregister("DevPanel")
    Factory.register("DevPanel", cls=DevPanel)
    Builder.load_file(str(KV_DIR / "devpanel.kv"))
    devices, controller = kiosk.devices, kiosk.controller
    serial = {"n": 0}

    def box(cip13: str, expiry: str = "2027-12-31") -> Callable[[], None]:
        def inject() -> None:
            serial["n"] += 1
            devices.box(cip13, f"DEV{time.time_ns() % 10**9:09d}{serial['n']}", expiry)

        return inject

    actions: list[tuple[str, Callable[[], None]]] = [
        ("Appli carte Vitale (Durand)", lambda: devices.scan(APCV_DURAND)),
        ("Carte Vitale famille Martin", lambda: devices.insert_card("martin-family")),
        ("Carte Vitale (ALD)", lambda: devices.insert_card("ald")),
        ("Retirer la carte", devices.remove_card),
        ("Attestation mutuelle", lambda: devices.scan(AMC_ATTESTATION)),
        ("Attestation expirée", lambda: devices.scan(AMC_EXPIRED)),
        ("Ordonnance numérique", lambda: devices.scan(PRESCRIPTION)),
        ("Ordonnance (hors ligne)", lambda: devices.scan(PAPER_PRESCRIPTION)),
        ("Boîte DOLIPRANE 1000", box("3400930000120")),
        ("Boîte 2e ligne", box("3400930000649")),
        ("Boîte périmée", box("3400930000120", "2025-01-31")),
        ("Code illisible", lambda: devices.scan(UNREADABLE)),
        ("Réseau coupé", lambda: controller.network(False)),
        ("Réseau rétabli", lambda: controller.network(True)),
        ("Téléservices lents (1,5 s)", lambda: kiosk.rig.set_fault({"service": "*", "latency_ms": 1500})),
        ("Téléservices normaux", lambda: kiosk.rig.set_fault("clear")),
        ("Inactivité (+2 min)", lambda: kiosk.clock.advance(121)),
        ("Téléphone : valider l'e-CPS", lambda: _phone(kiosk, approve=True)),
        ("Téléphone : refuser l'e-CPS", lambda: _phone(kiosk, approve=False)),
    ]
    panel = DevPanel(size_hint_x=1)
    for label, action in actions:
        button = Factory.DevButton(text=label)
        button.bind(on_release=lambda _b, act=action: act())
        panel.ids.buttons.add_widget(button)
    return panel
