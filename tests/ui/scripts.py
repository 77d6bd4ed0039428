"""The windowed scenarios run by ``tests/ui/runner.py``, one per process."""

from __future__ import annotations

import itertools
import os
import time
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from tests.ui.states import STATES
from ui.config import KioskConfig

APCV = b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"
AMC = b"AMC01\x1d88888888\x1dSP,ISANTE\x1dCSR01\x1d0012345678\x1d20260101\x1d20261231"
PRESCRIPTION = b"EP7K2Q-9XWM-4TDA-LR8C"
BOXES = (("3400930000120", "J0001"), ("3400930000120", "J0002"), ("3400930000649", "J0003"))
PIN = "2468"


def widget_facts(driver: Any) -> dict[str, Any]:
    """What is visible: texts, buttons with their boxes, labels outside the window or overflowing their box."""
    from kivy.core.window import Window
    from kivy.uix.label import Label
    from kivy.uix.scrollview import ScrollView

    from ui.driving import visible_widgets
    from ui.widgets import KButton

    width, height = Window.size
    texts: list[str] = []
    buttons: list[dict[str, Any]] = []
    outside: list[dict[str, Any]] = []
    overflow: list[dict[str, Any]] = []
    scrolled: set[int] = set()
    for widget in visible_widgets(driver.top):
        if isinstance(widget, ScrollView):
            scrolled.update(id(w) for w in widget.walk(restrict=True) if w is not widget)
        if not isinstance(widget, Label):
            continue
        x, y = widget.to_window(widget.x, widget.y)
        box = [round(x), round(y), round(widget.width), round(widget.height)]
        if widget.text:
            texts.append(widget.text)
        if isinstance(widget, KButton):
            buttons.append({"intent": widget.intent, "text": widget.text, "box": box, "disabled": widget.disabled})
        if not widget.text.strip():
            continue
        if id(widget) not in scrolled and (
            x < -1 or y < -1 or x + widget.width > width + 1 or y + widget.height > height + 1
        ):
            outside.append({"text": widget.text, "box": box})
        if widget.texture_size[0] > widget.width + 2 or widget.texture_size[1] > widget.height + 2:
            overflow.append({"text": widget.text, "box": box, "texture": list(widget.texture_size)})
    return {"texts": texts, "buttons": buttons, "outside": outside, "overflow": overflow, "window": [width, height]}


Script = Generator[Any, None, None]


def play(
    config: KioskConfig,
    vm: Any,
    script: Callable[[Any, dict[str, Any]], Script],
    *,
    controller: Any = None,
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run the app with ``script(driver, result)``; the app stops at its end or on its first failure."""
    from kivy.tests.common import UnitTestTouch

    from ui.app import build_app
    from ui.driving import KioskDriver, run_script
    from ui.watchdog import Watchdog

    result: dict[str, Any] = {"touch_px": config.touch_px, "unit_px": config.unit_px}
    started = time.perf_counter()

    def ready(app: Any) -> None:
        result["start_s"] = time.perf_counter() - started
        driver = KioskDriver(app, controller, touch_class=UnitTestTouch)

        def failed(error: BaseException) -> None:
            result["error"] = "".join(traceback.format_exception(error))
            app.stop()

        run_script(script(driver, result), on_done=app.stop, on_error=failed)

    watchdog = Watchdog() if os.environ.get("NOTIFY_SOCKET") else None
    build_app(vm, config, tick=tick, on_ready=ready, watchdog=watchdog).run()
    if watchdog is not None:
        result["watchdog_pings"] = watchdog.sent
    return result


# ---------------------------------------------------------------------------------------------- screens
def screens(config: KioskConfig, out: Path) -> dict[str, Any]:
    from appliance.workflow.machine import Outcome
    from appliance.workflow.session import Step
    from ui.controller import Result
    from ui.viewmodel import KioskViewModel

    vm = KioskViewModel(None)
    vm.set_operators(["alice", "bruno"])
    vm.products = [("DOLIPRANE 1000 mg cp B/8", "3400930000120"), ("AMOXICILLINE BIOGARAN 1 g cp B/6", "3400930000649")]

    def script(driver: Any, result: dict[str, Any]) -> Script:
        yield 0.3
        result["states"] = []
        for state in STATES:
            vm.panel_open, vm.unlocked, vm.operator_name = False, False, ""
            vm.claims_open = False
            vm.close_pin()
            vm._pending = 0
            vm._settle_busy()
            if state.panel == "claims":  # the list reaches an open, unlocked panel only
                vm.panel_open, vm.unlocked, vm.operator_name = True, True, "alice"
            step = Step(state.view["step"])
            if not state.accepted:  # a refusal comes on the step the kiosk was showing
                vm.finished(Result("scan", Outcome(True, step, None), state.view))
            vm.finished(Result(state.kind, Outcome(state.accepted, step, state.message), state.view))
            if state.panel is None and vm.panel_open:
                vm.close_panel()  # opened by itself on a pending act: the patient's screen is the subject
            if state.busy:
                vm.began("scan")
                vm.waiting, vm.progress = True, 0.4
                vm.refresh()
            if state.panel in ("work", "claims"):
                vm.unlocked, vm.operator_name = True, "alice"
            if state.panel == "claims":
                vm.claims_open = True
            if state.panel is not None:
                vm.open_panel()
            if state.panel == "pin":
                vm.choose_operator("alice")
                vm.pin.press("2")
                vm.pin.press("4")
            for name, value in state.extra.items():
                setattr(vm, name, value)
            yield 0.1
            png = driver.screenshot(out / f"{state.name}.png")
            facts = widget_facts(driver)
            facts.update(name=state.name, screen=vm.screen, png=str(png), panel_open=vm.panel_open)
            facts["dp_rows"] = len(vm.dp_rows)  # the panel holds them even while it is closed
            result["states"].append(facts)

    return play(config, vm, script)


# ---------------------------------------------------------------------------------------------- with the core
def _with_kiosk(config: KioskConfig, out: Path, body: Callable[[Any, Any, dict[str, Any]], Script]) -> dict[str, Any]:
    from appliance.store.recent_claims import last_shown
    from ui.app import kivy_post
    from ui.kiosk import kiosk_against_sandbox

    with kiosk_against_sandbox(config, kivy_post, db_path=out / "counter.db") as kiosk:
        result = play(
            config,
            kiosk.vm,
            lambda driver, result: body(kiosk, driver, result),
            controller=kiosk.controller,
            tick=kiosk.controller.tick,
        )
        result["db"] = kiosk.controller.worker.call(kiosk.rig.db_state)
        result["last_claim_shown"] = kiosk.controller.worker.call(lambda: last_shown(kiosk.rig.db.conn))
    return result


def journey(config: KioskConfig, out: Path) -> dict[str, Any]:
    """A family card (choice, identity), then a whole apCV session to the receipt, by touch."""

    def body(kiosk: Any, driver: Any, result: dict[str, Any]) -> Script:
        from ui.driving import visible_texts

        vm, devices = kiosk.vm, kiosk.devices
        visited: list[str] = []
        result["visited"] = visited

        def patient_texts() -> list[str]:
            """The patient's screen, under the panel when it is open."""
            return visible_texts(driver.app.kiosk.ids.sm)

        def touch(intent: str) -> Script:
            driver.touch(intent)
            yield 0.05
            yield driver.settled
            yield 0.1  # the layout pass after the new state
            visited.append(vm.screen)

        def device(action: Callable[[], None]) -> Script:
            action()
            yield driver.settled
            visited.append(vm.screen)

        yield 0.3
        yield from device(lambda: devices.insert_card("martin-family"))
        yield from touch("choose_beneficiary:2")
        # Léa is 14: the session waits for the pharmacist, whose panel opens by itself on the login
        result["identity_texts"] = patient_texts()
        result["identity_panel"] = {"open": vm.panel_open, "unlocked": vm.unlocked, "texts": driver.texts()}
        driver.screenshot(out / "identity-login.png")
        yield from touch("operator:alice")
        for digit in PIN:
            driver.touch(f"pin:{digit}")
        result["pin_texts"] = driver.texts()
        yield from touch("pin:ok")
        result["unlocked"] = vm.unlocked
        result["document_buttons"] = sorted(b.intent for b in driver.visible_buttons())
        driver.screenshot(out / "identity-documents.png")
        yield from touch("document:livret-famille")
        result["guardian_buttons"] = sorted(b.intent for b in driver.visible_buttons())
        yield from touch("guardian:cni")
        result["after_document"] = {"screen": vm.screen, "panel_open": vm.panel_open, "message": vm.message}
        yield from touch("cancel")
        yield from device(devices.remove_card)
        yield from device(lambda: devices.scan(APCV))
        result["rights_texts"] = driver.texts()
        yield from device(lambda: devices.scan(AMC))
        yield from device(lambda: devices.scan(PRESCRIPTION))
        result["prescription_texts"] = patient_texts()
        result["prescription_panel"] = {"open": vm.panel_open, "unlocked": vm.unlocked, "texts": driver.texts()}
        yield from touch("operator:alice")  # the Vitale card pulled out locked the panel: a new login
        driver.type_pin(PIN)
        yield 0.05
        yield driver.settled
        result["prescription_buttons"] = sorted(b.intent for b in driver.visible_buttons())
        driver.screenshot(out / "prescription-panel.png")
        yield from touch("confirm_prescription")
        result["after_prescription"] = {"screen": vm.screen, "panel_open": vm.panel_open}
        for cip13, serial in BOXES:
            yield from device(lambda cip13=cip13, serial=serial: devices.box(cip13, serial))
        yield from touch("continue")
        result["control_texts"] = patient_texts()
        result["control_panel_open"] = vm.panel_open
        yield from touch("annotate:0")
        result["annotated"] = {"annotation": vm.annotation, "message": vm.message}
        yield from touch("validate")
        for digit in PIN:
            driver.touch(f"pin:{digit}")
        yield from touch("pin:ok")
        result["payment_texts"] = driver.texts()
        driver.screenshot(out / "payment.png")
        yield from touch("close")
        result["thanks_texts"] = driver.texts()
        yield lambda: vm.screen == "attract"
        result["final_texts"] = driver.texts()
        result["touches"] = driver.touches
        driver.screenshot(out / "final.png")

        def journal() -> list[tuple[str, int | None]]:
            from appliance.store import audit

            return [(e.action, e.operator_id) for e in audit.entries(kiosk.rig.db, limit=100_000)]

        result["journal"] = kiosk.controller.worker.call(journal)

    return _with_kiosk(config, out, body)


def idle(config: KioskConfig, out: Path) -> dict[str, Any]:
    """A patient walks away mid-session: two minutes later the screen holds nothing of them."""

    def body(kiosk: Any, driver: Any, result: dict[str, Any]) -> Script:
        from ui.driving import visible_texts

        vm, devices = kiosk.vm, kiosk.devices
        yield 0.3
        devices.insert_card("martin-family")
        yield driver.settled
        driver.touch("choose_beneficiary:2")
        yield 0.05
        yield driver.settled
        result["before"] = {"screen": vm.screen, "texts": visible_texts(driver.app.kiosk.ids.sm)}
        driver.screenshot(out / "before.png")
        kiosk.clock.advance(kiosk.rig.counter.settings.idle_timeout_s + 1)
        advanced = time.perf_counter()
        yield lambda: vm.screen == "attract"
        yield 0.15
        result["cleared_after_s"] = time.perf_counter() - advanced
        result["after"] = {"screen": vm.screen, "texts": driver.texts(), "message": vm.message}
        result["properties"] = {
            "greeting": vm.greeting,
            "patient_name": vm.patient_name,
            "beneficiaries": list(vm.beneficiaries),
            "lines": list(vm.lines),
            "amo_text": vm.amo_text if vm.screen != "attract" else "",
        }
        driver.screenshot(out / "after.png")

    return _with_kiosk(config.with_options(idle_tick_s=0.2), out, body)


def slow(config: KioskConfig, out: Path) -> dict[str, Any]:
    """apCV answers in 1.5 s: frames keep coming, the waiting screen shows, and Annuler is obeyed at once."""

    def body(kiosk: Any, driver: Any, result: dict[str, Any]) -> Script:
        from kivy.clock import Clock
        from kivy.core.window import Window

        vm, devices = kiosk.vm, kiosk.devices
        frames: list[float] = []
        flips: list[float] = []
        seen: list[str] = []
        yield 0.3
        kiosk.rig.set_fault({"service": "apcv", "latency_ms": 1500, "times": 1})
        Clock.schedule_interval(lambda _dt: frames.append(time.perf_counter()), 0)
        Window.bind(on_flip=lambda *_: flips.append(time.perf_counter()))
        vm.bind(screen=lambda _vm, screen: seen.append(screen))
        answered: list[float] = []
        finished = vm.finished

        def spy(outcome: Any) -> None:
            if outcome.kind == "scan":
                answered.append(time.perf_counter())
            finished(outcome)

        vm.finished = spy
        start = time.perf_counter()
        devices.scan(APCV)
        yield lambda: vm.waiting
        yield 0.3
        shot = time.perf_counter()
        driver.screenshot(out / "waiting.png")
        shot_span = (shot, time.perf_counter())
        result["waiting_texts"] = driver.texts()
        touched = time.perf_counter()
        driver.touch("cancel")
        result["cancel_reaction_ms"] = (time.perf_counter() - touched) * 1000 if vm.cancelling else None
        yield driver.settled
        end = time.perf_counter()
        yield 0.1
        # frames while the teleservice call runs: from the scan to its answer on the UI thread
        inside = [t for t in frames if start <= t <= answered[0]]
        # the test's own screenshot blocks the UI thread for a moment: that gap is not the kiosk's
        gaps = [b - a for a, b in itertools.pairwise(inside) if not (a <= shot_span[1] and b >= shot_span[0])]
        result.update(
            call_s=answered[0] - start,
            settled_s=end - start,
            frames=len(inside),
            flips=len([t for t in flips if start <= t <= answered[0]]),
            max_gap_ms=max(gaps) * 1000 if gaps else None,
            long_gaps=[
                (round((a - start) * 1000), round((b - a) * 1000))
                for a, b in itertools.pairwise(inside)
                if b - a > 0.05 and not (a <= shot_span[1] and b >= shot_span[0])
            ],
            shot_ms=[round((t - start) * 1000) for t in shot_span],
            touched_ms=round((touched - start) * 1000),
            screens=seen,
            final={"screen": vm.screen, "message": vm.message},
        )

    return _with_kiosk(config, out, body)


# ---------------------------------------------------------------------------------------------- after a stop
def bill_without_showing(db_path: Path) -> int:
    """A whole apCV session billed on the core alone, as if the kiosk died between the claim's COMMIT
    and its payment screen: the claim is in the file, no screen ever reported it shown."""
    from appliance.codes.reader import CodeReader
    from appliance.domain import Role
    from appliance.scenario import EXPECTED_KINDS, ScenarioClock, counter_rig
    from appliance.workflow.events import Intent, Scanned
    from appliance.workflow.session import Step

    with counter_rig(db_path=db_path, key_path=None, sandbox_url=None, clock=ScenarioClock()) as rig:
        rig.add_operator("alice", Role.PHARMACIEN, PIN)
        counter, reader = rig.counter, CodeReader()

        def scan(raw: bytes) -> None:
            outcome = counter.handle(Scanned(reader.read(raw, expect=EXPECTED_KINDS.get(counter.step))))
            assert outcome.accepted, outcome

        def intent(name: str, **args: Any) -> None:
            outcome = counter.handle(Intent(name, args))
            assert outcome.accepted, outcome

        scan(APCV)
        scan(AMC)
        scan(PRESCRIPTION)
        intent("login", operator="alice", pin=PIN)
        intent("confirm_prescription")
        for cip13, serial in BOXES:
            scan(f"010{cip13}1727123110LOT1\x1d21{serial}".encode("ascii"))
        intent("continue")
        intent("validate", operator="alice", pin=PIN)
        assert counter.step is Step.PAYMENT
        return int(counter.session.claim_number or 0)


def recovery(config: KioskConfig, out: Path) -> dict[str, Any]:
    """The kiosk starts after a bill its patient never saw: the panel opens on it, and after the PIN
    the list of the last claims shows it first."""
    claim = bill_without_showing(out / "counter.db")

    def body(kiosk: Any, driver: Any, result: dict[str, Any]) -> Script:
        from appliance.store import audit, operators
        from ui.driving import visible_texts

        vm = kiosk.vm
        yield 0.3
        yield lambda: vm.panel_open and bool(vm.recovery_text)
        yield 0.15
        result["banner"] = vm.recovery_text
        result["locked_texts"] = driver.texts()
        result["patient_texts"] = visible_texts(driver.app.kiosk.ids.sm)
        driver.screenshot(out / "recovery-locked.png")
        driver.touch("operator:alice")
        yield 0.05
        driver.type_pin(PIN)
        yield lambda: vm.claims_open and bool(vm.recent_claims)
        yield driver.settled
        yield 0.15
        result["list_texts"] = driver.texts()
        driver.screenshot(out / "recovery-list.png")

        def journal() -> dict[str, Any]:
            entries = audit.entries(kiosk.rig.db, limit=100_000)
            alice = next(op.id for op in operators.list_operators(kiosk.rig.db) if op.name == "alice")
            return {
                "alice": alice,
                "listed_by": [e.operator_id for e in entries if e.action == "claims.listed"],
                "interrupted": [e.subject for e in entries if e.action == "claim.interrupted"],
            }

        result["journal"] = kiosk.controller.worker.call(journal)

    result = _with_kiosk(config, out, body)
    result["claim"] = claim
    result["pngs"] = sorted(str(png) for png in out.glob("recovery-*.png"))
    return result


def ecps(config: KioskConfig, out: Path) -> dict[str, Any]:
    """The e-CPS login on the panel against the sandbox Pro Santé Connect: validated on the phone while the
    counter serves a card, refused on the phone (RPPS typed), cancelled at the kiosk."""
    alice, bruno = "10000000007", "10000000015"

    def body(kiosk: Any, driver: Any, result: dict[str, Any]) -> Script:
        vm, phone = kiosk.vm, kiosk.phone

        def touch(intent: str) -> Script:
            driver.touch(intent)
            yield 0.05
            yield driver.settled
            yield 0.1

        yield 0.3
        yield from touch("open_panel")
        result["login_buttons"] = sorted(b.intent for b in driver.visible_buttons())
        yield from touch("operator:alice")
        result["pad_buttons"] = sorted(b.intent for b in driver.visible_buttons())
        driver.screenshot(out / "ecps-pad.png")
        yield from touch("ecps")
        yield lambda: bool(vm.ecps_code)
        yield 0.15
        result["waiting"] = {
            "texts": driver.texts(),
            "code": vm.ecps_code,
            "page": driver.app.panel.ids.panel_sm.current,
        }
        result["phone"] = [r for r in phone.requests() if r["status"] == "pending"]
        driver.screenshot(out / "ecps-waiting.png")
        kiosk.devices.insert_card("martin-family")  # the counter goes on while the phone is asked
        yield lambda: vm.step == "choose-beneficiary"
        result["served_while_waiting"] = vm.ecps_waiting
        phone.approve(alice)
        yield lambda: vm.unlocked
        yield 0.15
        result["unlocked"] = {"operator": vm.operator_name, "message": vm.message, "texts": driver.texts()}
        driver.screenshot(out / "ecps-unlocked.png")
        kiosk.devices.remove_card()
        yield lambda: not vm.unlocked
        yield driver.settled

        yield from touch("open_panel")
        yield from touch("ecps_rpps")
        for digit in bruno:
            driver.touch(f"pin:{digit}")
        yield 0.1
        result["rpps_texts"] = driver.texts()
        driver.screenshot(out / "ecps-rpps.png")
        yield from touch("pin:ok")
        yield lambda: bool(vm.ecps_code)
        phone.deny(bruno)
        yield lambda: not vm.ecps_waiting
        yield 0.15
        result["denied"] = {"message": vm.message, "unlocked": vm.unlocked, "texts": driver.texts()}
        driver.screenshot(out / "ecps-denied.png")

        yield from touch("operator:alice")
        yield from touch("ecps")
        yield lambda: bool(vm.ecps_code)
        yield from touch("ecps_cancel")
        result["cancelled"] = {
            "message": vm.message,
            "waiting": vm.ecps_waiting,
            "page": driver.app.panel.ids.panel_sm.current,
        }
        phone.approve(alice)  # too late: the kiosk no longer polls for that request
        yield 2.5
        result["after_cancel"] = {"unlocked": vm.unlocked, "operator": vm.operator_name}

        def journal() -> list[str]:
            from appliance.store import audit

            return [e.action for e in audit.entries(kiosk.rig.db, limit=100_000) if e.action.startswith("operator.")]

        result["journal"] = kiosk.controller.worker.call(journal)

    return _with_kiosk(config, out, body)


MODES: dict[str, Callable[[KioskConfig, Path], dict[str, Any]]] = {
    "screens": screens,
    "journey": journey,
    "idle": idle,
    "slow": slow,
    "recovery": recovery,
    "ecps": ecps,
}
