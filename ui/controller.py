"""The kiosk's hands on the core: devices and touches become events, run in order off the UI thread.

Scans arrive from driver threads (a :data:`appliance.ports.ScanSink`), card events from the card
reader, touches from the UI; all of them go through one :class:`CounterWorker`. The code is read
(``CodeReader``) on the worker too, with the kinds the step then expects, exactly as the scenario
runner does. Results are handed to a :class:`Listener` (the view model) on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.cards import CardError, CardHolder
from appliance.codes.reader import CodeReader
from appliance.scan import ScanEvent
from appliance.scenario import EXPECTED_KINDS
from appliance.workflow.events import (
    CardInserted,
    CardRemoved,
    Event,
    Intent,
    NetworkChanged,
    ResultShown,
    Scanned,
    Started,
    Tick,
)
from appliance.workflow.machine import Counter, Outcome
from ui.worker import CounterWorker, Post


@dataclass(frozen=True)
class Result:
    """What one event came to, with the screens' projection taken right after it (on the worker)."""

    kind: str
    """``scan``, ``card-inserted``, ``card-removed``, ``intent:<name>``, ``tick``, ``network``, ``started``
    or ``shown``."""
    outcome: Outcome
    view: dict[str, Any]
    injected_at: float = 0.0
    """``time.perf_counter()`` when the event entered the kiosk (scan-to-screen latency)."""


QUIET_KINDS = frozenset({"tick", "started", "shown"})
"""Events the kiosk sends by itself: no waiting screen, no ``began`` (the listener must not count them)."""


class Listener(Protocol):
    def began(self, kind: str) -> None: ...

    def finished(self, result: Result) -> None: ...

    def crashed(self, kind: str, error: BaseException) -> None: ...


class KioskController:
    """Serialises every event to the counter on one worker thread and reports back on the UI thread."""

    def __init__(
        self,
        counter: Counter,
        reader: CodeReader,
        post: Post,
        *,
        set_network: Callable[[bool], None] | None = None,
        deliver: Callable[[], object] | None = None,
        perf_counter: Callable[[], float] | None = None,
        worker: CounterWorker | None = None,
    ) -> None:
        import time

        self.counter = counter
        self.reader = reader
        self.post = post
        self.worker = worker or CounterWorker(post)
        self.listener: Listener | None = None
        self._set_network = set_network
        self._deliver = deliver
        self._now = perf_counter or time.perf_counter

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    @property
    def idle(self) -> bool:
        return self.worker.idle

    # ------------------------------------------------------------------ what comes in
    def scan(self, scan: ScanEvent) -> None:
        """The ScanSink given to the drivers: safe from any thread, never blocks."""
        injected = self._now()

        def job() -> Event:
            code = self.reader.read(scan.raw, symbology=scan.symbology, expect=EXPECTED_KINDS.get(self.counter.step))
            return Scanned(code)

        self._submit("scan", job, injected)

    def card_inserted(self, card: CardInserted) -> None:
        self._submit("card-inserted", lambda: card, self._now())

    def card_removed(self) -> None:
        self._submit("card-removed", CardRemoved, self._now())

    def intent(self, name: str, **args: Any) -> None:
        self._submit(f"intent:{name}", lambda: Intent(name, dict(args)), self._now())

    def cps_login(self, verify: Callable[[], CardHolder]) -> None:
        """Log in with a CPS: ``verify`` (the card's ``verify_pin``, a few APDUs) runs on the worker,
        never on the UI thread, and ``cps_login`` reaches the core only if the card accepted the PIN;
        a refusal by the card (wrong PIN, blocked, card pulled out) comes back as a refused outcome
        with the card's French sentence."""

        def job() -> Event:
            holder = verify()
            return Intent("cps_login", {"rpps": holder.rpps, "name": holder.display_name})

        self._submit("intent:cps_login", job, self._now())

    def psc_login(self, rpps: str, name: str) -> None:
        """Log in the professional whose e-CPS validated on their phone: sent by :class:`ui.ecps.EcpsLogin`
        only once Pro Santé Connect's ID token for this login was verified (the RPPS is the token's)."""
        self._submit("intent:psc_login", lambda: Intent("psc_login", {"rpps": rpps, "name": name}), self._now())

    def started(self) -> None:
        """Once, when the kiosk starts: the core looks for a bill a power cut hid from its patient."""
        self._submit("started", Started, self._now(), quiet=True)

    def claim_shown(self, claim: int) -> None:
        """The patient's screen has shown claim ``claim``: the core records it durably (quietly)."""
        self._submit("shown", lambda: ResultShown(claim), self._now(), quiet=True)

    def tick(self) -> None:
        """Time passed: sent from the UI clock, only when nothing else is queued (ticks never pile up)."""
        if self.worker.idle:
            self._submit("tick", Tick, self._now(), quiet=True)

    def network(self, up: bool) -> None:
        """The link came up or went down; coming up also delivers what waits in the outbox."""

        def job() -> Event:
            if self._set_network is not None:
                self._set_network(up)
            return NetworkChanged(up)

        def after() -> None:
            if up and self._deliver is not None:
                self._deliver()

        self._submit("network", job, self._now(), after=after)

    # ------------------------------------------------------------------ the worker's side
    def _submit(
        self,
        kind: str,
        make_event: Callable[[], Event],
        injected: float,
        *,
        quiet: bool = False,
        after: Callable[[], None] | None = None,
    ) -> None:
        listener = self.listener
        if listener is not None and not quiet:
            self.post(lambda: listener.began(kind))

        def job() -> Result:
            try:
                event = make_event()
            except CardError as refusal:  # the card said no: nothing reaches the core
                return Result(kind, Outcome(False, self.counter.step, refusal.message), self.counter.view(), injected)
            outcome = self.counter.handle(event)
            if after is not None:
                after()
            return Result(kind, outcome, self.counter.view(), injected)

        def done(result: Result) -> None:
            if self.listener is not None:
                self.listener.finished(result)

        def failed(error: BaseException) -> None:
            if self.listener is not None:
                self.listener.crashed(kind, error)

        self.worker.submit(job, done, failed)
