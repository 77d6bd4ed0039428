"""Devices played by software: a scanner and a carte Vitale reader delivering where real drivers would.

The demo, the tests and the kiosk benchmark feed the controller through the ports the drivers use: a
:class:`ScanEvent` to :meth:`KioskController.scan` (a ``ScanSink``), a :class:`CardInserted` or a removal.
Kept apart from the demo's composition root so that a kiosk wired by the production one (the benchmark's)
can be driven without loading the sandbox.
"""

from __future__ import annotations

import time
from datetime import date
from typing import TYPE_CHECKING

from appliance.scan import ScanEvent

if TYPE_CHECKING:
    from appliance.workflow.events import CardInserted
    from ui.controller import KioskController


class SimulatedDevices:
    """A scanner and a carte Vitale reader played by software, delivering where real drivers would."""

    def __init__(self, controller: KioskController, source: str = "simulated:scanner") -> None:
        self.controller = controller
        self.source = source

    def scan(self, raw: bytes) -> None:
        self.controller.scan(ScanEvent(raw=raw, source=self.source, timestamp=time.time()))

    def box(self, cip13: str, serial: str, expiry: str = "2027-12-31", lot: str = "LOT1") -> None:
        """The GS1 DataMatrix of a medicine box."""
        day = date.fromisoformat(expiry).strftime("%y%m%d")
        self.scan(f"010{cip13}17{day}10{lot}\x1d21{serial}".encode("ascii"))

    def insert_card(self, case: str, data_on: date | None = None) -> None:
        """A carte Vitale of a sandbox population case."""
        self.controller.card_inserted(population_card(case, data_on))

    def remove_card(self) -> None:
        self.controller.card_removed()


def population_card(case: str, data_on: date | None = None) -> CardInserted:
    """The carte Vitale of a sandbox population case, read on ``data_on`` (the population's reference day)."""
    from appliance.scenario import START
    from appliance.workflow.events import CardInserted
    from sandbox.population import CASES, PEOPLE

    members = [PEOPLE[key] for key in CASES[case].members]
    return CardInserted(
        beneficiaries=tuple(p.beneficiary for p in members),
        amo={p.beneficiary.nir: p.card_amo for p in members},
        data_on=data_on or START.date(),
    )
