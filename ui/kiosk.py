"""The kiosk's composition root: the core, its store and teleservices, the worker, the view model.

Devices feed the controller through the same ports the real drivers use: a scanner delivers a
:class:`ScanEvent` to :meth:`KioskController.scan` (a ``ScanSink``), the card reader a
:class:`CardInserted` or a removal. In the demo and the tests :class:`~ui.simulated.SimulatedDevices` does that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from appliance.codes.reader import CodeReader
from appliance.domain import Role
from appliance.scenario import START, CounterRig, counter_rig
from ui.clock import KioskClock
from ui.config import KioskConfig
from ui.controller import KioskController
from ui.ecps import EcpsLogin
from ui.simulated import SimulatedDevices
from ui.viewmodel import KioskViewModel
from ui.worker import CounterWorker, Post

DEMO_OPERATORS = (("alice", Role.PHARMACIEN, "2468"), ("bruno", Role.PREPARATEUR, "1357"))
DEMO_RPPS = {"alice": "10000000007", "bruno": "10000000015"}
"""Their RPPS, for the CPS and the e-CPS login (the sandbox Pro Santé Connect knows both)."""


@dataclass
class Kiosk:
    rig: CounterRig
    controller: KioskController
    vm: KioskViewModel
    clock: KioskClock
    config: KioskConfig
    devices: SimulatedDevices
    phone: SandboxPhone | None = None
    """The professionals' phone (e-CPS), played through the sandbox Pro Santé Connect."""


class SandboxPhone:
    """The e-CPS app on the professional's phone: the sandbox provider's test controls validate or refuse
    the pending backchannel request (``/_sandbox/psc/approve``, ``/deny``)."""

    def __init__(self, base_url: str) -> None:
        self.control = f"{base_url}/_sandbox/psc"

    def requests(self) -> list[dict[str, object]]:
        import httpx

        answer = httpx.get(f"{self.control}/requests", timeout=2.0)
        answer.raise_for_status()
        return list(answer.json()["requests"])

    def approve(self, rpps: str) -> None:
        self._answer("approve", rpps)

    def deny(self, rpps: str) -> None:
        self._answer("deny", rpps)

    def _answer(self, verb: str, rpps: str) -> None:
        import httpx

        httpx.post(f"{self.control}/{verb}", json={"rpps": rpps}, timeout=2.0).raise_for_status()


@contextlib.contextmanager
def kiosk_against_sandbox(
    config: KioskConfig,
    post: Post,
    *,
    db_path: Path | None = None,
    sandbox_url: str | None = None,
    operators: Sequence[tuple[str, Role, str]] = DEMO_OPERATORS,
    rpps: Mapping[str, str] = DEMO_RPPS,
    start: datetime | None = START,
    population: object = None,
    mail: bool = True,
) -> Iterator[Kiosk]:
    """A whole kiosk on a real SQLite store and the sandbox teleservices over HTTP (127.0.0.1).

    The clock starts on the sandbox population's reference day (rights and prescriptions valid),
    runs in real time, and can be advanced (idle timeout tests). Without ``mail`` no sandbox MSSanté
    operator is started in this process (the secure messages then wait in the outbox, as on the box,
    where ``comptoir sync`` sends them): the benchmark measures the kiosk without it.
    """
    clock = KioskClock(start)

    def today() -> date:
        return datetime.fromtimestamp(clock(), tz=UTC).date()

    worker = CounterWorker(post)
    worker.start()
    rig_context = counter_rig(
        db_path=db_path,
        key_path=None,
        sandbox_url=sandbox_url,
        clock=clock,
        population=population,
        sandbox_today=today,
        timeout=config.expected_call_s,
        mail=mail,
    )

    def open_rig() -> tuple[CounterRig, list[str], dict[str, str]]:
        from appliance.store.operators import rpps_by_name

        rig = rig_context.__enter__()
        for name, role, pin in operators:
            rig.add_operator(name, role, pin, rpps.get(name))
        return rig, rig.operator_names(), rpps_by_name(rig.db)

    try:
        rig, names, rpps_of = worker.call(open_rig)
    except BaseException:
        worker.stop()
        raise
    try:
        controller = KioskController(
            rig.counter,
            CodeReader(),
            post,
            set_network=lambda up: setattr(rig.network, "up", up),
            deliver=rig.deliver,
            worker=worker,
        )
        vm = KioskViewModel(
            controller,
            thanks_s=config.thanks_s,
            banner_s=config.banner_s,
            waiting_after_s=config.waiting_after_s,
            expected_call_s=config.expected_call_s,
            panel_lock_s=config.panel_lock_s,
        )
        controller.listener = vm
        vm.set_operators(names)
        vm.set_operator_rpps(rpps_of)
        vm.products = [(p.name, p.cip13) for p in rig.counter.products][:8]
        psc, ecps = sandbox_ecps(rig.base_url, controller, post)
        vm.ecps, vm.ecps_ready = ecps, True
        controller.started()  # a bill cut off by the last stop opens the pharmacist's panel
        try:
            yield Kiosk(rig, controller, vm, clock, config, SimulatedDevices(controller), SandboxPhone(rig.base_url))
        finally:
            ecps.stop()
            psc.close()
    finally:
        worker.call(lambda: rig_context.__exit__(None, None, None))
        worker.stop()


def sandbox_ecps(base_url: str, controller: KioskController, post: Post) -> tuple[Any, EcpsLogin]:
    """The e-CPS login against the sandbox Pro Santé Connect (its test client credentials)."""
    from sandbox.psc import CLIENT_ID, CLIENT_SECRET, ISSUER_PATH
    from sync.psc import PscClient, PscSettings

    client = PscClient(PscSettings(base_url + ISSUER_PATH, CLIENT_ID, CLIENT_SECRET, timeout_s=2.0))
    return client, EcpsLogin(client, controller.psc_login, post)
