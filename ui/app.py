"""The kiosk's Kivy application: loads the kv screens, binds them to the view model, drives the clock.

Kivy reads its configuration when its window module is first imported, so :func:`configure_kivy`
must run before anything imports ``kivy.core.window`` (this module imports it lazily).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ui.config import KioskConfig
from ui.viewmodel import KioskViewModel

KV_DIR = Path(__file__).with_name("kv")
KV_FILES = ("base.kv", "screens.kv", "pharmacist.kv")
"""The kiosk's screens; ``devpanel.kv`` is loaded by the windowed demo only."""


KIVY_IMAGE_PROVIDERS = ("tex", "dds", "sdl2")
"""Kivy's image loaders the kiosk lets it try, in order."""


def configure_kivy(config: KioskConfig, *, extra_width: int = 0) -> None:
    """Window size, fullscreen, no cursor, no Escape-to-quit, no mouse multitouch emulation.

    ``extra_width`` widens a developer window for the demo's injection panel beside the kiosk.
    """
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    steady_malloc()
    import kivy

    # Read by kivy.core.image when first imported (with the window): SDL2_image reads PNG and JPEG; without
    # the list, Kivy also loads Pillow for nothing (2 MB of the kiosk's memory)
    kivy.kivy_options["image"] = KIVY_IMAGE_PROVIDERS
    from kivy.config import Config

    width, height = config.window_size
    Config.set("graphics", "width", str(width + extra_width))
    Config.set("graphics", "height", str(height))
    Config.set("graphics", "fullscreen", "auto" if config.fullscreen else "0")
    Config.set("graphics", "borderless", "1" if config.fullscreen else "0")
    Config.set("graphics", "show_cursor", "0" if config.fullscreen else "1")
    Config.set("graphics", "resizable", "0")
    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "pause_on_minimize", "0")
    Config.set("kivy", "keyboard_mode", "system")
    Config.set("input", "mouse", "mouse,disable_multitouch")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters (malloc.h)."""
MALLOC_THRESHOLD = 128 * 1024


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def steady_malloc() -> None:
    """Keep glibc's thresholds where they start (128 KiB), for a process that runs for months.

    By default glibc raises its mmap threshold to the size of each large block freed (up to 32 MiB) and
    its trim threshold to twice that: after a few sessions' big buffers (Argon2, SQLite, text
    textures) the heap keeps tens of megabytes it never gives back, and RSS creeps up session after
    session. Fixed thresholds (setting them turns the adjustment off) put large blocks back in their
    own mappings, returned on free, and the heap's free top back to the system. Elsewhere than glibc:
    nothing to do."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MALLOC_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, MALLOC_THRESHOLD)


def freeze_startup_objects() -> None:
    """Once the first screen is drawn: collect, then move every object alive (modules, kv rules, the
    screens' widgets) out of the collector's reach. A full collection then walks only what was made
    since, instead of the whole start-up heap (a quarter of a second on llvmpipe's box with 250,000
    objects, long enough to make a scan miss its frame)."""
    gc.collect()
    gc.freeze()


def collect_between_patients() -> None:
    """A full collection when a session ends, while nobody waits for the screen: what the session
    left in reference cycles (replaced view rows, dropped results) goes now, not in the middle of
    the next patient's dispensation, and the heap's high-water mark stays that of one session; the
    pages that freed inside the heap go back to the system too (glibc's ``malloc_trim``)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def kivy_post(callback: Callable[[], None]) -> None:
    """Run ``callback`` on the UI thread at the next frame (safe from any thread)."""
    from kivy.clock import Clock

    Clock.schedule_once(lambda _dt: callback(), 0)


def build_app(
    vm: KioskViewModel,
    config: KioskConfig,
    *,
    tick: Callable[[], None] | None = None,
    on_ready: Callable[[Any], None] | None = None,
    dev_panel: Any = None,
    watchdog: Any = None,
    on_stop: Callable[[], None] | None = None,
) -> Any:
    """The kiosk App (Kivy imported here, after :func:`configure_kivy`)."""
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.factory import Factory
    from kivy.lang import Builder
    from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty
    from kivy.uix.boxlayout import BoxLayout
    from kivy.uix.floatlayout import FloatLayout

    from ui import widgets
    from ui.watchdog import watchdog_interval

    for name in ("KButton", "RowList", "RowLabel", "ChoiceList", "Pictogram", "ProgressStrip", "Deck", "Shown", "Body"):
        if name not in Factory.classes:
            Factory.register(name, cls=getattr(widgets, name))

    class KioskRoot(FloatLayout):  # type: ignore[misc]
        pass

    class PharmacistPanel(BoxLayout):  # type: ignore[misc]
        def on_touch_down(self, touch: Any) -> bool:
            if self.collide_point(*touch.pos):
                vm.touch_panel()
            super().on_touch_down(touch)
            return True  # the panel covers the patient screen: nothing passes through

    for name, cls in (("KioskRoot", KioskRoot), ("PharmacistPanel", PharmacistPanel)):
        if name in Factory.classes:
            Factory.unregister(name)
        Factory.register(name, cls=cls)

    class KioskApp(App):  # type: ignore[misc]
        u = NumericProperty(config.unit_px)
        portrait = BooleanProperty(config.orientation == "portrait")
        vm = ObjectProperty(None)
        use_kivy_settings = False
        title = "comptoir"

        def build(self) -> Any:
            self.vm = vm
            for name in KV_FILES:
                path = KV_DIR / name
                Builder.unload_file(str(path))
                Builder.load_file(str(path))
            self.kiosk = KioskRoot()
            self.panel = PharmacistPanel()
            vm.bind(screen=self._show_screen, panel_open=self._show_panel)
            vm.bind(pin_for=self._show_panel_page, unlocked=self._show_panel_page, claims_open=self._show_panel_page)
            vm.bind(ecps_waiting=self._show_panel_page)
            vm.bind(step=self._session_over)
            self._show_screen()
            self._show_panel_page()
            self._show_panel()  # a result applied before the window existed may have opened it
            if dev_panel is None:
                return self.kiosk
            outer = BoxLayout(orientation="horizontal")
            self.kiosk.size_hint_x = None
            self.kiosk.width = config.window_size[0]
            outer.add_widget(self.kiosk)
            outer.add_widget(dev_panel)
            return outer

        def _show_screen(self, *_: Any) -> None:
            self.kiosk.ids.sm.current = vm.screen

        def _show_panel_page(self, *_: Any) -> None:
            if vm.ecps_waiting:
                page = "ecps"
            elif vm.pin_for:
                page = "pin"
            elif vm.unlocked:
                page = "claims" if vm.claims_open else "work"
            else:
                page = "operators"
            self.panel.ids.panel_sm.current = page

        def _session_over(self, *_: Any) -> None:
            if vm.step == "attract":  # after the frame that shows it
                Clock.schedule_once(lambda _dt: collect_between_patients(), 0)

        def _first_frame(self, *_: Any) -> None:
            Window.unbind(on_flip=self._first_frame)
            Clock.schedule_once(lambda _dt: freeze_startup_objects(), 0)

        def _show_panel(self, *_: Any) -> None:
            if vm.panel_open and self.panel.parent is None:
                self.kiosk.add_widget(self.panel)
                widgets.show_stale(self.panel)  # its lists wait while it is closed
            elif not vm.panel_open and self.panel.parent is not None:
                self.kiosk.remove_widget(self.panel)

        def on_start(self) -> None:
            Window.show_cursor = not config.fullscreen
            Window.bind(on_request_close=self._refuse_close)
            Window.bind(on_flip=self._first_frame)
            widgets.show_stale(self.root)  # lists filled while the screens were built, before the window
            Clock.schedule_interval(lambda _dt: vm.refresh(), 0.1)
            if tick is not None:
                Clock.schedule_interval(lambda _dt: tick(), config.idle_tick_s)
            if watchdog is not None:
                watchdog.ready()
                watchdog.ping()
                Clock.schedule_interval(watchdog.ping, watchdog_interval())
            if on_ready is not None:
                on_ready(self)

        def _refuse_close(self, *_: Any, **__: Any) -> bool:
            """No way out to a desktop: a fullscreen kiosk ignores close requests (Alt-F4 and the like)."""
            return config.fullscreen

        def open_settings(self, *_: Any) -> bool:
            return False  # no F1 settings panel at the counter

        def on_stop(self) -> None:
            if on_stop is not None:
                on_stop()

    return KioskApp()
