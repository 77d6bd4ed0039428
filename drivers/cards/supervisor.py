"""The smart-card reader supervisor: which cards are in which readers, told to the core as they come and go.

pyscard's CardMonitor is not used because of its known faults: its thread dies when pcscd restarts, a reader
unplug stops it, and it gives no event for a card that was already in the reader when it started. This
supervisor owns its PC/SC context and:

- blocks in ``SCardGetStatusChange`` on every reader plus the ``\\\\?PnP?\\Notification`` pseudo-reader, so
  a reader plugged in or out wakes it up like a card does (no polling; the call's timeout is only a safety
  net, ten seconds by default, one second while no reader is known);
- starts every reader in the UNAWARE state, so the first answer is the current state: a card already
  present is reported like an insertion;
- reports a card swapped between two answers (pcsc-lite's event counter jumped by two) as a removal then
  an insertion, so a CPS cannot be replaced by another one without the kiosk hearing of it;
- when pcscd stops or restarts (the context dies: ``SCARD_E_NO_SERVICE``, ``SCARD_F_COMM_ERROR``...)
  reports every card it knew as absent (cause ``service-lost``: nothing proves it is the same card when the
  service is back), tells the :class:`~appliance.ports.DeviceStatusSink`, and establishes a new context
  with an exponential back-off (``retry_initial_s`` doubling up to ``retry_max_s``), waiting on the stop
  event, never spinning;
- reports a reader that vanished with its card as absent (cause ``reader-lost``) and the reader as lost;
- stops promptly: ``stop()`` cancels the blocked call with ``SCardCancel`` from the caller's thread;
- classifies every card by its ATR (:mod:`drivers.cards.atr`, configurable rules).

Nothing starts at construction; the sink is called from the supervisor's thread, in the order things
happened, and a sink that raises is logged without stopping the supervisor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.cards import AbsenceCause, CardAbsent, CardKind, CardPresence, CardPresenceSink, CardPresent
from appliance.ports import DeviceStatusSink
from drivers.cards.atr import DEFAULT_ATR_RULES, AtrRules, atr_text
from drivers.cards.pcsc import E_CANCELLED, E_UNKNOWN_READER, PNP_READER, STATE_CHANGED, PcscApi, PcscError, ReaderState
from drivers.worker import DriverThread

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """Timings of the supervisor; the defaults suit a counter (a card is reported within milliseconds)."""

    source_id: str = "pcsc"
    """Name given to the DeviceStatusSink for the PC/SC service itself (readers go by their own names)."""
    retry_initial_s: float = 0.25
    """First wait before a new context after pcscd went away; doubled at every failure."""
    retry_max_s: float = 5.0
    """Longest wait between two attempts: pcscd back is noticed within this time."""
    wait_ms: int = 10_000
    """Longest single SCardGetStatusChange. Changes wake it at once; this only bounds a lost wake-up."""
    no_reader_wait_ms: int = 1_000
    """The same while no reader is known. pcsc-lite compares the reader count at the start of the call, so a
    reader that arrives between the listing and the call (or a listing that came back empty right after a
    pcscd start) would otherwise wait ``wait_ms``; the reader list is read again after every timeout."""
    max_wakeups_per_s: int = 50
    """Above this rate of answers that change nothing, the supervisor pauses 100 ms (a misbehaving driver
    must not turn it into a busy loop)."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_initial_s <= self.retry_max_s:
            raise ValueError("retry_initial_s must be positive and at most retry_max_s")
        if min(self.wait_ms, self.no_reader_wait_ms, self.max_wakeups_per_s) <= 0:
            raise ValueError("wait_ms, no_reader_wait_ms and max_wakeups_per_s must be positive")


@dataclass(slots=True)
class _Slot:
    """What the supervisor last knew of one reader."""

    current_state: int = 0
    atr: bytes | None = None
    """The ATR of the card present, None when the reader is empty."""
    kind: CardKind = CardKind.UNKNOWN
    event_count: int = 0


@dataclass(slots=True)
class _Throttle:
    """Counts answers that changed nothing, so that a driver answering in a loop cannot spin the CPU."""

    limit: int
    window_start: float = 0.0
    count: int = 0
    clock: Callable[[], float] = field(default=time.monotonic)

    def idle_answer(self) -> bool:
        """Record one; True when the rate is over the limit (the caller should pause)."""
        now = self.clock()
        if now - self.window_start >= 1.0:
            self.window_start, self.count = now, 0
        self.count += 1
        return self.count > self.limit


class ReaderSupervisor(DriverThread):
    """Watches every PC/SC reader and reports :class:`CardPresent` / :class:`CardAbsent` to the sink."""

    def __init__(
        self,
        sink: CardPresenceSink,
        status: DeviceStatusSink | None = None,
        *,
        rules: AtrRules = DEFAULT_ATR_RULES,
        config: SupervisorConfig | None = None,
        api_factory: Callable[[], PcscApi] = PcscApi,
    ) -> None:
        super().__init__()
        self.config = config or SupervisorConfig()
        self._sink = sink
        self._status = status
        self._rules = rules
        self._api_factory = api_factory
        self._api: PcscApi | None = None
        self._context: int | None = None
        self._context_lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._service_lost = False
        self._throttle = _Throttle(self.config.max_wakeups_per_s)

    @property
    def source(self) -> str:
        return self.config.source_id

    def present_cards(self) -> dict[str, CardPresent]:
        """The cards present now, by reader (for a kiosk screen that opens after the events were sent)."""
        return {
            name: CardPresent(name, slot.atr, slot.kind)
            for name, slot in list(self._slots.items())
            if slot.atr is not None
        }

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        api = self._api_factory()
        self._api = api
        delay = self.config.retry_initial_s
        while not self._stop.is_set():
            try:
                context = api.establish()
            except PcscError as exc:
                self._lose_service(f"cannot reach pcscd: {exc}")
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            with self._context_lock:
                self._context = context
            try:
                self._monitor(api, context)
                delay = self.config.retry_initial_s
            except PcscError as exc:
                if exc.service_gone:
                    self._lose_service(f"pcscd went away: {exc}")
                else:
                    log.warning("card supervisor: %s; new PC/SC context in %.2f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self.config.retry_max_s)
            finally:
                with self._context_lock:
                    self._context = None
                api.release(context)

    def _interrupt(self) -> None:
        """Cancel the blocked SCardGetStatusChange; repeated briefly in case the call had not started yet."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with self._context_lock:
                context, api = self._context, self._api
            if context is not None and api is not None:
                try:
                    api.cancel(context)
                except PcscError:
                    log.debug("SCardCancel failed", exc_info=True)
            thread = self._thread
            if thread is None:
                return
            thread.join(0.05)
            if not thread.is_alive():
                return

    def _monitor(self, api: PcscApi, context: int) -> None:
        """Follow the readers on one context until stopped; raises PcscError when the context dies."""
        pnp_state = 0
        relist = True
        while not self._stop.is_set():
            if relist:
                names = api.list_readers(context)
                log.debug("card supervisor: readers %s", names)
                self._reconcile(names)
                if self._service_lost:
                    self._service_lost = False
                    log.info("card supervisor: pcscd reachable again")
                    self._tell_found(self.source)
            states = [(name, slot.current_state) for name, slot in self._slots.items()]
            states.append((PNP_READER, pnp_state))
            try:
                wait = self.config.wait_ms if self._slots else self.config.no_reader_wait_ms
                answer = api.get_status_change(context, wait, states)
            except PcscError as exc:
                if exc.code == E_CANCELLED:
                    continue  # stop() woke us up; the loop condition ends it
                if exc.code == E_UNKNOWN_READER:
                    relist = True  # a reader left between the listing and the call
                    continue
                raise
            if answer is None:
                relist = True  # cheap (the client library's copy): catches a reader PnP did not report
                continue
            relist = False
            changed = False
            for state in answer:
                if state.reader == PNP_READER:
                    if state.event_state & STATE_CHANGED:
                        relist = True
                    pnp_state = state.event_state & ~STATE_CHANGED
                    continue
                slot = self._slots.get(state.reader)
                if slot is None:
                    continue
                if state.gone:
                    relist = True
                    continue
                changed |= self._update(state.reader, slot, state)
            if not (changed or relist) and self._throttle.idle_answer():
                self._stop.wait(0.1)

    def _reconcile(self, names: list[str]) -> None:
        """Forget readers that left (their card reported absent), start new ones UNAWARE."""
        for name in [n for n in self._slots if n not in names]:
            slot = self._slots.pop(name)
            if slot.atr is not None:
                self._emit(CardAbsent(name, slot.kind, AbsenceCause.READER_LOST))
            log.warning("card reader %r unplugged", name)
            self._tell_lost(name, "lecteur débranché")
        for name in names:
            if name not in self._slots:
                self._slots[name] = _Slot()
                log.info("card reader %r found", name)
                self._tell_found(name)

    def _update(self, reader: str, slot: _Slot, state: ReaderState) -> bool:
        """Apply one reader's new state; True when a card event was emitted."""
        slot.current_state = state.event_state & ~STATE_CHANGED
        was = slot.atr
        swapped = was is not None and state.present and (state.event_count - slot.event_count) % 0x10000 >= 2
        slot.event_count = state.event_count
        emitted = False
        if was is not None and (not state.present or state.atr != was or swapped):
            self._emit(CardAbsent(reader, slot.kind, AbsenceCause.REMOVED))
            slot.atr = None
            emitted = True
        if state.present and slot.atr is None:
            slot.atr = state.atr
            slot.kind = self._rules.classify(state.atr)
            log.info("card in %r: %s (ATR %s)", reader, slot.kind.value, atr_text(state.atr))
            self._emit(CardPresent(reader, state.atr, slot.kind))
            emitted = True
        return emitted

    def _lose_service(self, reason: str) -> None:
        """pcscd is gone: every card known is reported absent, once; the status sink hears it once."""
        for name, slot in list(self._slots.items()):
            if slot.atr is not None:
                self._emit(CardAbsent(name, slot.kind, AbsenceCause.SERVICE_LOST))
            # The reader is kept (with no card, state unaware): one missing when pcscd is back was unplugged.
            self._slots[name] = _Slot()
        if not self._service_lost:
            self._service_lost = True
            log.warning("card supervisor: %s", reason)
            self._tell_lost(self.source, reason)

    # ------------------------------------------------------------------ sinks
    def _emit(self, event: CardPresence) -> None:
        try:
            self._sink(event)
        except Exception:
            log.exception("card sink failed on %s", type(event).__name__)

    def _tell_lost(self, source: str, reason: str) -> None:
        if self._status is not None:
            try:
                self._status.device_lost(source, reason)
            except Exception:
                log.exception("device status sink failed")

    def _tell_found(self, source: str) -> None:
        if self._status is not None:
            try:
                self._status.device_found(source)
            except Exception:
                log.exception("device status sink failed")
