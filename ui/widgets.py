"""Kiosk widgets used by the kv screens: flat high-contrast buttons, lists kept in step with view-model rows,
and the attract screen's pictograms (drawn, so the kiosk ships no image files)."""

from __future__ import annotations

from typing import Any

from kivy.graphics import Color, Line, Rectangle, RoundedRectangle
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, OptionProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from ui import theme


class KButton(Button):  # type: ignore[misc]
    """A flat button at least one touch target high and wide; darker while pressed."""

    kind = OptionProperty("primary", options=list(theme.BUTTON_COLORS))
    intent = StringProperty("")
    """The intent or action it stands for (the tests and the journey find buttons by it)."""
    choice: Any = None
    """In a :class:`ChoiceList`, the ``index`` of the item it shows (sent with ``on_choice``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.background_normal = ""
        self.background_down = ""
        self.background_disabled_normal = ""
        self.background_disabled_down = ""
        self.bind(kind=self._paint, state=self._paint, disabled=self._paint)
        self._paint()

    def _paint(self, *_: Any) -> None:
        normal, down = theme.BUTTON_COLORS[self.kind]
        if self.disabled:
            self.background_color, self.disabled_color = theme.ROW, theme.MUTED
        else:
            self.background_color = normal if self.state == "normal" else down
        self.color = theme.WHITE


class Deck(BoxLayout):  # type: ignore[misc]
    """Pages of which only ``current`` is attached: switching is immediate and leaves no ghost behind.

    (A ScreenManager switched twice in one frame, even with NoTransition, can leave the previous
    screen drawn under the new one.)
    """

    current = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        self.pages: list[Any] = []
        super().__init__(**kwargs)

    def add_widget(self, widget: Any, *args: Any, **kwargs: Any) -> None:
        # kv sets a page's name after adding it: names are looked up when switching
        self.pages.append(widget)
        if len(self.pages) == 1:
            super().add_widget(widget, *args, **kwargs)

    def on_current(self, _deck: Any, name: str) -> None:
        page = next((p for p in self.pages if getattr(p, "name", None) == name), None)
        if page is None:
            raise KeyError(f"no page named {name!r}")
        if page.parent is self:
            return
        for child in list(self.children):
            super().remove_widget(child)
        super().add_widget(page)
        show_stale(page)


class Body(ScrollView):  # type: ignore[misc]
    """A screen's scrolling body (kv: ``<Body>`` in ``base.kv``).

    Kivy 2.3's ScrollView binds ``bar_color`` again each time it lays its content out and unbinds it
    once, half a second after the last time: every list that changes inside it left bindings behind
    (4,000 over 300 sessions, the kiosk's one steady growth). Here the binding is dropped before each
    layout, so at most one is ever there."""

    def update_from_scroll(self, *largs: Any) -> None:
        self.funbind("bar_color", self._change_bar_color)
        super().update_from_scroll(*largs)


class Shown(BoxLayout):  # type: ignore[misc]
    """A section the kv shows or hides (``shown``): hidden, it is 0 high and transparent, and it takes no
    touch. Its children keep their own size when hidden, so without this a hidden section could
    swallow a touch meant for the section drawn over it (a disabled widget eats the touches it gets)."""

    shown = BooleanProperty(True)

    def on_shown(self, *_: Any) -> None:
        if self.shown:
            show_stale(self)

    def on_touch_down(self, touch: Any) -> bool:
        return bool(self.shown and super().on_touch_down(touch))

    def on_touch_move(self, touch: Any) -> bool:
        return bool(self.shown and super().on_touch_move(touch))

    def on_touch_up(self, touch: Any) -> bool:
        return bool(self.shown and super().on_touch_up(touch))


def on_screen(widget: Any) -> bool:
    """Whether ``widget`` can be seen: attached to the window (not on a page a :class:`Deck` holds off,
    nor in the pharmacist panel while it is closed) and inside no hidden :class:`Shown` section."""
    node = widget
    while True:
        if isinstance(node, Shown) and not node.shown:
            return False
        parent = node.parent
        if parent is None or parent is node:  # the Window is its own parent
            return bool(node.get_root_window() is node)
        node = parent


def show_stale(root: Any) -> None:
    """Bring the lists under ``root`` up to date, now that it is shown (see :meth:`RowList.rebuild`)."""
    for widget in root.walk(restrict=True):
        if isinstance(widget, RowList | ChoiceList) and widget.stale:
            widget.rebuild()


class RowLabel(Label):  # type: ignore[misc]
    """One row of a list; ``gap`` highlights a discrepancy."""

    gap = BooleanProperty(False)
    dense = BooleanProperty(False)
    unit = NumericProperty(80)


class RowList(BoxLayout):  # type: ignore[misc]
    """Rows shown from ``items`` (dicts with ``text`` and optional ``gap``, ``done``, ``detail``: a second,
    smaller and greyer line).

    The rows are updated in place: a new ``items`` changes the text and colour of the rows already
    there and adds or removes rows only for the difference in count, so a box scanned costs one new
    row and the labels whose text changed, not a new list of widgets (and their garbage) every time.
    """

    items = ListProperty([])
    unit = NumericProperty(80)
    empty = StringProperty("")
    dense = BooleanProperty(False)
    """Smaller rows (receipt, amounts, boxes): more fit on a 480-pixel screen."""

    def __init__(self, **kwargs: Any) -> None:
        self._rows: list[RowLabel] = []
        """The row labels, top to bottom."""
        self.stale = False
        """``items`` changed while the list could not be seen: the rows wait for it to be shown."""
        super().__init__(**kwargs)

    def on_items(self, *_: Any) -> None:
        self.rebuild()

    def on_unit(self, *_: Any) -> None:
        self.rebuild()

    def on_dense(self, *_: Any) -> None:
        self.rebuild()

    def on_empty(self, *_: Any) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        """Show ``items``; a list nobody can see (another screen's, the closed panel's) only notes it
        and is brought up to date when shown (:func:`show_stale`): each label changed costs a text
        render and a texture upload, and most lists bound to a view-model row are off screen."""
        self.stale = not on_screen(self)
        if self.stale:
            return
        rows = list(self.items)
        if not rows and self.empty:
            rows = [{"text": self.empty}]
        while len(self._rows) > len(rows):
            self.remove_widget(self._rows.pop())
        for index, item in enumerate(rows):
            text = str(item.get("text", ""))
            if item.get("done"):
                text = f"{text}   [b]{item['done']}[/b]"
            if item.get("detail"):
                size = round(self.unit * theme.SMALL)
                text = f"{text}\n[size={size}][color={_hex(theme.MUTED)}]{item['detail']}[/color][/size]"
            if index < len(self._rows):
                row = self._rows[index]
                row.text, row.gap, row.unit, row.dense = text, bool(item.get("gap")), self.unit, self.dense
            else:
                row = RowLabel(text=text, gap=bool(item.get("gap")), unit=self.unit, dense=self.dense)
                self._rows.append(row)
                self.add_widget(row)  # a BoxLayout puts the widget added last at the bottom


def _hex(rgba: tuple[float, float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgba[:3])


class ChoiceList(GridLayout):  # type: ignore[misc]
    """One big button per item (dicts with ``index`` and ``text``); ``on_choice(index)`` when touched.

    An item may also carry its own ``kind`` (colour), ``intent`` (instead of ``<intent>:<index>``)
    and ``disabled``; ``selected`` paints it as the current choice. Like :class:`RowList`, the
    buttons are updated in place and only the difference in count is added or removed.
    """

    items = ListProperty([])
    unit = NumericProperty(80)
    kind = StringProperty("primary")
    intent = StringProperty("")

    __events__ = ("on_choice",)

    def __init__(self, **kwargs: Any) -> None:
        self._buttons: list[KButton] = []
        """The buttons in the order of ``items``; each remembers its item's ``index`` (``choice``)."""
        self.stale = False
        """As :attr:`RowList.stale`."""
        super().__init__(**kwargs)

    def on_items(self, *_: Any) -> None:
        self.rebuild()

    def on_unit(self, *_: Any) -> None:
        self.rebuild()

    def on_kind(self, *_: Any) -> None:
        self.rebuild()

    def on_intent(self, *_: Any) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        """Show ``items`` (deferred while the list cannot be seen, as :meth:`RowList.rebuild`)."""
        self.stale = not on_screen(self)
        if self.stale:
            return
        items = list(self.items)
        while len(self._buttons) > len(items):
            self.remove_widget(self._buttons.pop())
        for index, item in enumerate(items):
            if index < len(self._buttons):
                button = self._buttons[index]
            else:
                button = KButton(size_hint_y=None, halign="center", valign="middle")
                button.bind(size=_wrap_button_text, on_release=self._chosen)
                self._buttons.append(button)
                self.add_widget(button)  # a GridLayout lays the widget added last out last
            button.choice = item["index"]
            button.text = str(item["text"])
            button.kind = "secondary" if item.get("selected") else str(item.get("kind") or self.kind)
            button.intent = str(item.get("intent") or f"{self.intent}:{item['index']}")
            button.disabled = bool(item.get("disabled"))
            button.height = self.unit
            button.font_size = self.unit * theme.BODY

    def _chosen(self, button: KButton) -> None:
        self.dispatch("on_choice", button.choice)

    def on_choice(self, index: int) -> None:
        """Default handler (kv binds the real one)."""


def _wrap_button_text(button: KButton, size: Any) -> None:
    button.text_size = (size[0] - 20, None)


class ProgressStrip(Widget):  # type: ignore[misc]
    """A flat progress bar (0 to 1) in the kiosk's colours."""

    value = NumericProperty(0.0)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self.draw, size=self.draw, value=self.draw)

    def draw(self, *_: Any) -> None:
        self.canvas.clear()
        with self.canvas:
            Color(*theme.ROW)
            RoundedRectangle(pos=self.pos, size=self.size, radius=[self.height / 2])
            Color(*theme.PRIMARY)
            filled = max(self.height, self.width * max(0.0, min(1.0, self.value)))
            RoundedRectangle(pos=self.pos, size=(filled, self.height), radius=[self.height / 2])


class Pictogram(Widget):  # type: ignore[misc]
    """The three things to present: ``card`` (carte Vitale), ``phone`` (apCV QR), ``paper`` (ordonnance)."""

    kind = OptionProperty("card", options=["card", "phone", "paper"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self.draw, size=self.draw, kind=self.draw)

    def draw(self, *_: Any) -> None:
        self.canvas.clear()
        side = min(self.width, self.height)
        x0, y0 = self.center_x - side / 2, self.center_y - side / 2
        ink = theme.PRIMARY
        with self.canvas:
            if self.kind == "card":
                w, h = side, side * 0.63
                y = self.center_y - h / 2
                Color(*ink)
                RoundedRectangle(pos=(x0, y), size=(w, h), radius=[side * 0.06])
                Color(1.0, 0.83, 0.3, 1)
                RoundedRectangle(pos=(x0 + w * 0.12, y + h * 0.38), size=(w * 0.2, h * 0.28), radius=[side * 0.02])
                Color(*theme.WHITE)
                Rectangle(pos=(x0 + w * 0.12, y + h * 0.12), size=(w * 0.6, h * 0.07))
            elif self.kind == "phone":
                w, h = side * 0.56, side
                x = self.center_x - w / 2
                Color(*theme.SECONDARY)
                RoundedRectangle(pos=(x, y0), size=(w, h), radius=[side * 0.07])
                Color(*theme.WHITE)
                q = w * 0.7
                qx, qy = x + (w - q) / 2, y0 + (h - q) / 2
                Rectangle(pos=(qx, qy), size=(q, q))
                Color(*theme.TEXT)
                cell = q / 7
                for i, j in [(0, 0), (0, 5), (5, 0), (2, 3), (3, 2), (4, 4), (3, 5), (5, 3), (1, 2)]:
                    Rectangle(pos=(qx + i * cell, qy + j * cell), size=(cell * (2 if (i, j) in _BIG else 1),) * 2)
            else:
                w, h = side * 0.74, side
                x = self.center_x - w / 2
                Color(*theme.SECONDARY)
                Rectangle(pos=(x, y0), size=(w, h))
                Color(*theme.WHITE)
                Rectangle(pos=(x + 3, y0 + 3), size=(w - 6, h - 6))
                Color(*theme.SECONDARY)
                for k in range(5):
                    yy = y0 + h * (0.75 - k * 0.14)
                    Line(points=[x + w * 0.15, yy, x + w * (0.85 if k % 2 == 0 else 0.6), yy], width=side * 0.015)
                Color(*theme.PRIMARY)
                Rectangle(pos=(x + w * 0.66, y0 + h * 0.08), size=(w * 0.08, h * 0.2))
                Rectangle(pos=(x + w * 0.6, y0 + h * 0.14), size=(w * 0.2, h * 0.08))


_BIG = {(0, 0), (0, 5), (5, 0)}
