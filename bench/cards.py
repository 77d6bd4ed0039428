"""Smart-card benchmark: carte Vitale insertion to beneficiaries, beside the bare APDU round trip.

Runs a private pcscd with vsmartcard-vpcd and the test suite's virtual carte Vitale (a family card, three
beneficiaries), the very set-up of ``tests/drivers/cards`` (DESIGN §7), and times, on the same reader:

1. **insertion -> beneficiaries**: from the moment vpcd accepts the virtual card (the card "touches the
   contacts") to the workflow's ``CardInserted`` leaving the card station, through the real
   :class:`ReaderSupervisor` and :class:`PcscVitaleReader`. Split into *detection* (insertion -> the
   supervisor's ``CardPresent``: pcscd notices the card, powers it, reads the ATR) and *read* (``CardPresent``
   -> ``CardInserted``: 4 APDUs in one PC/SC transaction, then parsing and NIR checks).
2. **Vitale read alone**: ``PcscVitaleReader.read_vitale`` on a card already in (context, connect,
   transaction, 4 APDUs, parse).
3. **bare APDU round trip**: ``SCardTransmit`` of one SELECT MF on an open connection: the floor any card
   read stands on.

    python bench/cards.py [--quick] [--insertions N] [--apdus N]

Needs root, pcscd and vsmartcard-vpcd (as the tests). Detection is dominated by pcscd's poll of a reader
without hot-plug interrupts (vpcd, like serial readers, is polled every 400 ms); USB CCID readers notify
pcscd at once, so on the appliance detection is a few milliseconds and *read* is what remains.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.cards import CardPresence, CardPresent
from appliance.workflow.events import CardInserted
from drivers.cards.cps import PcscCpsAuthenticator
from drivers.cards.pcsc import PcscApi, PcscChannel
from drivers.cards.station import CardStation, StationEvent
from drivers.cards.supervisor import ReaderSupervisor
from drivers.cards.vitale import PcscVitaleReader
from tests.drivers.cards.pcscd import PcscDaemon, missing_tools, wait_until
from tests.drivers.cards.people import family_card
from tests.drivers.cards.virtual import VpcdSlot

READER_NAME: Final = "Comptoir bench vpcd"
SLOT: Final = f"{READER_NAME} 00 00"
SELECT_MF: Final = bytes.fromhex("00A40000023F00")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Series:
    name: str
    times_ms: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.times_ms, 50)

    @property
    def p95(self) -> float:
        return percentile(self.times_ms, 95)


@dataclass
class Report:
    detection: Series
    read: Series
    insertion: Series
    vitale_read: Series
    apdu: Series
    beneficiaries: list[int] = field(default_factory=list)
    """Beneficiaries in every CardInserted received (3 each time)."""

    @property
    def rows(self) -> list[Series]:
        return [self.insertion, self.detection, self.read, self.vitale_read, self.apdu]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 insertions, 50 APDUs, 5 reads")
    parser.add_argument("--insertions", type=int, default=20, help="card insertions timed (default 20)")
    parser.add_argument("--apdus", type=int, default=1000, help="bare APDU round trips timed (default 1000)")
    parser.add_argument("--reads", type=int, default=50, help="Vitale reads on a card already in (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the pauses between insertions")
    args = parser.parse_args(argv)
    if args.quick:
        args.insertions, args.apdus, args.reads = 3, 50, 5
    return args


class _Timeline:
    """Station and supervisor sinks that stamp what they receive with perf_counter()."""

    def __init__(self, station: CardStation) -> None:
        self._station = station
        self.present_at: list[float] = []
        self.inserted: list[tuple[float, CardInserted]] = []

    def presence(self, event: CardPresence) -> None:
        if isinstance(event, CardPresent):
            self.present_at.append(time.perf_counter())
        self._station(event)

    def station_event(self, event: StationEvent) -> None:
        if isinstance(event, CardInserted):
            self.inserted.append((time.perf_counter(), event))


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    if not wait_until(predicate, timeout, step=0.001):
        raise RuntimeError(f"benchmark: {what} did not happen within {timeout} s")


def _card_seen(api: PcscApi, present: bool) -> bool:
    context = api.establish()
    try:
        answer = api.get_status_change(context, 0, [(SLOT, 0)])
        return answer is not None and answer[0].present == present
    finally:
        api.release(context)


def run_benchmark(args: argparse.Namespace) -> Report:
    reason = missing_tools()
    if reason is not None:
        raise SystemExit(f"bench/cards.py needs a private pcscd with vpcd: {reason}")
    report = Report(
        detection=Series("  detection (insertion -> CardPresent)"),
        read=Series("  read (CardPresent -> CardInserted)"),
        insertion=Series("insertion -> beneficiaries (CardInserted)"),
        vitale_read=Series("Vitale read, card already in (4 APDUs)"),
        apdu=Series("bare APDU round trip (SELECT MF)"),
    )
    with tempfile.TemporaryDirectory(prefix="comptoir-bench-cards-") as workdir:
        daemon = PcscDaemon(Path(workdir))
        slot = VpcdSlot(daemon.add_reader(READER_NAME))
        daemon.start()
        api = PcscApi()
        try:
            timeline: _Timeline
            station = CardStation(lambda e: timeline.station_event(e), PcscVitaleReader(), PcscCpsAuthenticator())
            timeline = _Timeline(station)
            supervisor = ReaderSupervisor(timeline.presence)
            supervisor.start()
            try:
                pause = random.Random(args.seed)
                for i in range(args.insertions):
                    # A person does not insert in step with pcscd's poll: a random pause after the last removal
                    # (which was seen right after a poll) spreads insertions over the poll period.
                    time.sleep(pause.uniform(0, 0.4))
                    slot.insert(family_card())
                    _wait(lambda i=i: len(timeline.inserted) > i, "CardInserted")  # type: ignore[misc]
                    inserted_at = slot.connected_at
                    present_at = timeline.present_at[i]
                    done_at, event = timeline.inserted[i]
                    report.detection.times_ms.append((present_at - inserted_at) * 1000)
                    report.read.times_ms.append((done_at - present_at) * 1000)
                    report.insertion.times_ms.append((done_at - inserted_at) * 1000)
                    report.beneficiaries.append(len(event.beneficiaries))
                    slot.remove()
                    _wait(lambda: _card_seen(api, present=False), "card removal")
            finally:
                supervisor.stop()
            slot.insert(family_card())
            _wait(lambda: _card_seen(api, present=True), "card insertion")
            reader = PcscVitaleReader()
            reader.read_vitale(SLOT)  # untimed warm-up
            for _ in range(args.reads):
                start = time.perf_counter()
                reader.read_vitale(SLOT)
                report.vitale_read.times_ms.append((time.perf_counter() - start) * 1000)
            context = api.establish()
            card, protocol = api.connect(context, SLOT)
            channel = PcscChannel(api, card, protocol)
            channel.transmit(SELECT_MF)
            for _ in range(args.apdus):
                start = time.perf_counter()
                channel.transmit(SELECT_MF)
                report.apdu.times_ms.append((time.perf_counter() - start) * 1000)
            api.disconnect(card)
            api.release(context)
        finally:
            slot.remove()
            daemon.stop()
    return report


def print_report(report: Report, args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    floor = report.apdu.p50
    headers = ["measure", "n", "p50 ms", "p95 ms", "p50 / APDU"]
    rows = [
        [s.name, str(len(s.times_ms)), f"{s.p50:.2f}", f"{s.p95:.2f}", f"{s.p50 / floor:.0f}×"] for s in report.rows
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    out(f"carte Vitale over PC/SC (pcscd + vpcd, family card of 3): {args.insertions} insertions")
    out(line(headers))
    out(line(["-" * w for w in widths]))
    for row in rows:
        out(line(row))
    out("")
    out(
        f"read = {report.read.p50:.2f} ms p50, {report.read.p50 / floor:.0f} bare APDUs' worth for 4 APDUs; "
        f"detection is pcscd's 400 ms poll of a vpcd (serial-like) reader."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print_report(run_benchmark(args), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
