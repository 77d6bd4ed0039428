"""The sandbox population the session and kiosk benchmarks play: one fresh ePrescription per session.

A module of its own, importing neither numpy nor httpx, because the kiosk benchmark builds it inside the
kiosk's process for its comparison run: whatever it imports would be counted as the kiosk's memory.
"""

from __future__ import annotations

import dataclasses

from sandbox.population import POPULATION, SAMPLE_PRESCRIPTION_ID, Population


def prescription_id(prefix: str, number: int) -> str:
    """A fresh ePrescription id in the sandbox pattern ``EPXXXX-XXXX-XXXX-XXXX``."""
    digits = f"{number:012d}"
    return f"EP{prefix[:4]}-{digits[:4]}-{digits[4:8]}-{digits[8:]}"


def bench_population(sessions: int) -> tuple[Population, list[str]]:
    """The sandbox population plus one copy of the sample ePrescription per session, under fresh ids.

    The sandbox makes an ePrescription single use (reset clears that), but the counter's own database
    remembers it too and rightly refuses it a second time: every session needs its own prescription.
    """
    sample = POPULATION.prescriptions[SAMPLE_PRESCRIPTION_ID]
    ids = [prescription_id("BNCH", i + 1) for i in range(sessions)]
    prescriptions = dict(POPULATION.prescriptions)
    prescriptions.update({rx_id: dataclasses.replace(sample, prescription_id=rx_id) for rx_id in ids})
    return dataclasses.replace(POPULATION, prescriptions=prescriptions), ids
