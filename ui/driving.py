"""Driving a running kiosk by touch, as a person would: for the demo, the journey test and the benchmark.

A script is a generator run on the Kivy clock: it yields a number of seconds to wait, or a predicate
to wait for (checked every frame, bounded by a timeout). Touches are real motion events dispatched
through Kivy's input path at the centre of the button found by its ``intent``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

Script = Generator[float | Callable[[], bool], None, None]


def _motion_event_class() -> Any:
    from kivy.base import EventLoop
    from kivy.input.motionevent import MotionEvent

    class ScriptTouch(MotionEvent):  # type: ignore[misc]
        """A finger on the screen (the same as ``kivy.tests.common.UnitTestTouch``, without pytest)."""

        def __init__(self, x: float, y: float) -> None:
            win = EventLoop.window
            super().__init__(
                "ScriptTouch",
                99,
                {"x": x / (win.width - 1.0), "y": y / (win.height - 1.0)},
                is_touch=True,
                type_id="touch",
            )
            self.profile = ["pos"]

        def depack(self, args: dict[str, float]) -> None:
            self.sx, self.sy = args["x"], args["y"]
            super().depack(args)

        def touch_down(self) -> None:
            EventLoop.post_dispatch_input("begin", self)

        def touch_up(self) -> None:
            EventLoop.post_dispatch_input("end", self)

    return ScriptTouch


def visible_widgets(root: Any) -> Iterator[Any]:
    """Widgets a person can see: only the current screen of each ScreenManager, nothing transparent."""
    from kivy.uix.screenmanager import ScreenManager

    stack = [root]
    while stack:
        widget = stack.pop()
        if widget.opacity == 0 or widget.width <= 0 or widget.height <= 0:
            continue
        yield widget
        if isinstance(widget, ScreenManager):
            if widget.current_screen is not None:
                stack.append(widget.current_screen)
            continue
        stack.extend(widget.children)


def visible_texts(root: Any) -> list[str]:
    from kivy.uix.label import Label

    return [w.text for w in visible_widgets(root) if isinstance(w, Label) and w.text]


class KioskDriver:
    """Finds buttons by intent, touches them, waits for the kiosk to settle, takes screenshots."""

    def __init__(self, app: Any, controller: Any = None, touch_class: Any = None) -> None:
        self.app = app
        self.vm = app.vm
        self.controller = controller
        self.touch_class = touch_class or _motion_event_class()
        self.touches = 0

    @property
    def top(self) -> Any:
        """What is on top: the pharmacist panel when open, else the patient screens."""
        return self.app.panel if self.vm.panel_open else self.app.kiosk

    def buttons(self, intent: str) -> list[Any]:
        from ui.widgets import KButton

        return [
            w for w in visible_widgets(self.top) if isinstance(w, KButton) and w.intent == intent and not w.disabled
        ]

    def visible_buttons(self) -> list[Any]:
        """Every button a finger can press now (on top, enabled)."""
        from ui.widgets import KButton

        return [w for w in visible_widgets(self.top) if isinstance(w, KButton) and w.intent and not w.disabled]

    def touch(self, intent: str) -> None:
        found = self.buttons(intent)
        if not found:
            shown = sorted({w.intent for w in visible_widgets(self.top) if getattr(w, "intent", "")})
            raise LookupError(f"no button {intent!r} on screen {self.vm.screen!r} (buttons: {shown})")
        widget = found[0]
        x, y = widget.to_window(*widget.center)
        finger = self.touch_class(x, y)
        finger.touch_down()
        finger.touch_up()
        self.touches += 1

    def type_pin(self, pin: str) -> None:
        for digit in pin:
            self.touch(f"pin:{digit}")
        self.touch("pin:ok")

    def settled(self) -> bool:
        idle = self.controller is None or self.controller.idle
        return bool(idle and not self.vm.busy)

    def texts(self) -> list[str]:
        return visible_texts(self.top)

    def screenshot(self, path: Path) -> Path:
        """Write what the window shows to ``path`` as PNG.

        The pixels are read as ``Window.screenshot`` does, but written by Pillow with light
        compression: Kivy's own writer takes about 150 ms a picture and numbers the file names.
        """
        from kivy.core.window import Window
        from kivy.graphics.opengl import GL_RGB, GL_UNSIGNED_BYTE, glPixelStorei, glReadPixels
        from PIL import Image

        width, height = Window.size
        glPixelStorei(0x0D05, 1)  # GL_PACK_ALIGNMENT: rows are not padded
        pixels = glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE)
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.frombytes("RGB", (width, height), pixels).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        image.save(path, compress_level=1)
        return path

    def screenshot_patient(self, path: Path) -> Path:
        """Write the patient's screen as it stands under the pharmacist panel (the panel left out)."""
        from PIL import Image

        layer = self.app.kiosk.ids.patient_layer
        path.parent.mkdir(parents=True, exist_ok=True)
        image = layer.export_as_image()
        width, height = image.texture.size
        picture = Image.frombytes("RGBA", (width, height), image.texture.pixels)  # top row first
        picture.convert("RGB").save(path, compress_level=1)
        return path


def run_script(script: Script, *, on_done: Callable[[], None], on_error: Callable[[BaseException], None]) -> None:
    """Play ``script`` on the Kivy clock; ``on_error`` gets any failure, a wait that timed out included."""
    from kivy.clock import Clock

    timeout_s = 30.0
    state: dict[str, Any] = {"waiting": None, "deadline": 0.0}

    def advance(_dt: float) -> None:
        try:
            predicate = state["waiting"]
            if predicate is not None:
                if not predicate():
                    if time.monotonic() > state["deadline"]:
                        raise TimeoutError(f"waited {timeout_s:.0f} s for {getattr(predicate, '__name__', predicate)}")
                    Clock.schedule_once(advance, 0)
                    return
                state["waiting"] = None
            command = next(script)
        except StopIteration:
            on_done()
            return
        except BaseException as exc:
            on_error(exc)
            return
        if callable(command):
            state["waiting"], state["deadline"] = command, time.monotonic() + timeout_s
            Clock.schedule_once(advance, 0)
        else:
            Clock.schedule_once(advance, float(command))

    Clock.schedule_once(advance, 0)
