"""Decode benchmark: zxing-cpp side by side with pylibdmtx (DataMatrix) and pyzbar (QR).

Every decoder reads the very same deterministic 640×480 greyscale frames (``bench/frames.py``): the
counter codes (GS1 medicine box, INS, 2D-DOC, opaque QR) clean, rotated, blurred and in low contrast.
A read succeeds when the decoded bytes equal the payload exactly (0x1D separators included). The table
gives, per symbology, condition and decoder, the success rate and the median and p95 time of one call,
with the p95 measured against one camera frame (33 ms, DESIGN §8) and the median against zxing-cpp's.

    python bench/decode.py [--repeat N] [--variants V] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from pylibdmtx import pylibdmtx
from pyzbar import pyzbar

from bench.frames import CONDITIONS, BenchFrame, make_frames
from drivers.imaging import Frame, Symbol, decode_frame

FRAME_BUDGET_MS: Final = 1000.0 / 30.0
"""One camera frame at 30 fps: decoding must fit well inside it (DESIGN §8)."""
DMTX_TIMEOUT_MS: Final = 500
"""libdmtx can search a hard frame for seconds: past this it gives up, and that is a failed read."""

ReadFn = Callable[[Frame, Symbol], bytes | None]


@dataclass(frozen=True, slots=True)
class Decoder:
    """A decoder under test: ``read`` returns the first code's bytes, or None."""

    name: str
    symbols: frozenset[Symbol]
    read: ReadFn
    timeout_ms: float | None = None


def _zxing_read(frame: Frame, symbol: Symbol) -> bytes | None:
    found = decode_frame(frame, [symbol])
    return found[0].raw if found else None


def _dmtx_reader(timeout_ms: int) -> ReadFn:
    def read(frame: Frame, symbol: Symbol) -> bytes | None:
        found = pylibdmtx.decode(frame, timeout=timeout_ms, max_count=1)
        return bytes(found[0].data) if found else None

    return read


def _zbar_read(frame: Frame, symbol: Symbol) -> bytes | None:
    found = pyzbar.decode(frame, symbols=[pyzbar.ZBarSymbol.QRCODE])
    return bytes(found[0].data) if found else None


def default_decoders(dmtx_timeout_ms: int = DMTX_TIMEOUT_MS) -> list[Decoder]:
    """zxing-cpp (as the appliance calls it, through ``drivers.imaging``) and its two peers."""
    return [
        Decoder("zxing-cpp", frozenset(Symbol), _zxing_read),
        Decoder("pylibdmtx", frozenset({Symbol.DATAMATRIX}), _dmtx_reader(dmtx_timeout_ms), dmtx_timeout_ms),
        Decoder("pyzbar", frozenset({Symbol.QR}), _zbar_read),
    ]


@dataclass(frozen=True, slots=True)
class Measurement:
    """Every timed call of one decoder on one frame."""

    decoder: str
    frame: BenchFrame
    frame_digest: str
    times_ms: tuple[float, ...]
    results: tuple[bytes | None, ...]
    timeout_ms: float | None = None

    @property
    def successes(self) -> int:
        return sum(r == self.frame.payload.data for r in self.results)

    @property
    def wrong(self) -> int:
        """Calls that returned bytes other than the payload."""
        return sum(r is not None and r != self.frame.payload.data for r in self.results)

    @property
    def timeouts(self) -> int:
        """Calls that found nothing and ran into the decoder's timeout."""
        if self.timeout_ms is None:
            return 0
        limit = 0.95 * self.timeout_ms
        return sum(r is None and t >= limit for r, t in zip(self.results, self.times_ms, strict=True))


def run(frames: Sequence[BenchFrame], decoders: Sequence[Decoder], repeat: int) -> list[Measurement]:
    """Time ``repeat`` calls of every decoder that reads a frame's symbology on that frame.

    Decoders take turns frame by frame, so that they all see the same frames under the same machine load.
    Each decoder first reads one clean frame untimed, to leave library loading out of the times.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    for decoder in decoders:
        warm = next((f for f in frames if f.payload.symbol in decoder.symbols), None)
        if warm is not None:
            decoder.read(warm.image, warm.payload.symbol)
    measurements = []
    for frame in frames:
        symbol = frame.payload.symbol
        digest = frame.digest
        for decoder in decoders:
            if symbol not in decoder.symbols:
                continue
            times: list[float] = []
            results: list[bytes | None] = []
            for _ in range(repeat):
                start = time.perf_counter_ns()
                result = decoder.read(frame.image, symbol)
                times.append((time.perf_counter_ns() - start) / 1e6)
                results.append(result)
            measurements.append(
                Measurement(decoder.name, frame, digest, tuple(times), tuple(results), decoder.timeout_ms)
            )
    return measurements


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a decoder on every frame of one symbology under one condition."""

    symbol: Symbol
    condition: str
    decoder: str
    frames: int
    calls: int
    successes: int
    wrong: int
    timeouts: int
    median_ms: float
    p95_ms: float
    vs_zxing: float | None
    """This decoder's median over zxing-cpp's on the same frames (None when zxing-cpp did not run)."""

    @property
    def success_rate(self) -> float:
        return self.successes / self.calls


def p95(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 95))


def summarise(measurements: Iterable[Measurement], reference: str = "zxing-cpp") -> list[Row]:
    """Rows ordered by symbology (as met), condition (as in ``CONDITIONS``), decoder (reference first)."""
    groups: dict[tuple[Symbol, str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.frame.payload.symbol, m.frame.condition, m.decoder), []).append(m)
    medians = {key: statistics.median(t for m in ms for t in m.times_ms) for key, ms in groups.items()}
    symbols = list(dict.fromkeys(symbol for symbol, _, _ in groups))  # in the frames' order

    def order(key: tuple[Symbol, str, str]) -> tuple[int, int, bool, str]:
        symbol, condition, decoder = key
        cond = CONDITIONS.index(condition) if condition in CONDITIONS else len(CONDITIONS)
        return (symbols.index(symbol), cond, decoder != reference, decoder)

    rows = []
    for key in sorted(groups, key=order):
        symbol, condition, decoder = key
        ms = groups[key]
        times = [t for m in ms for t in m.times_ms]
        ref = medians.get((symbol, condition, reference))
        rows.append(
            Row(
                symbol=symbol,
                condition=condition,
                decoder=decoder,
                frames=len(ms),
                calls=len(times),
                successes=sum(m.successes for m in ms),
                wrong=sum(m.wrong for m in ms),
                timeouts=sum(m.timeouts for m in ms),
                median_ms=medians[key],
                p95_ms=p95(times),
                vs_zxing=medians[key] / ref if ref else None,
            )
        )
    return rows


HEADERS: Final = (
    "symbol",
    "condition",
    "decoder",
    "frames",
    "success",
    "wrong",
    "t/o",
    "median ms",
    "p95 ms",
    "p95/33ms",
    "in frame",
    "× zxing",
)


def _cells(row: Row) -> tuple[str, ...]:
    budget = row.p95_ms / FRAME_BUDGET_MS
    return (
        row.symbol.value,
        row.condition,
        row.decoder,
        str(row.frames),
        f"{row.successes}/{row.calls} {row.success_rate:4.0%}",
        str(row.wrong),
        str(row.timeouts),
        f"{row.median_ms:.2f}",
        f"{row.p95_ms:.2f}",
        f"{budget:.0%}",
        "yes" if row.p95_ms < FRAME_BUDGET_MS else "NO",
        "-" if row.vs_zxing is None else f"{row.vs_zxing:.1f}",
    )


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table, one line per (symbology, condition, decoder)."""
    cells = [HEADERS, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    numeric = set(range(3, len(HEADERS)))

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [line(HEADERS), line(["-" * w for w in widths])]
    previous: tuple[Symbol, str] | None = None
    for row, values in zip(rows, cells[1:], strict=True):
        if previous is not None and previous != (row.symbol, row.condition):
            out.append("")
        previous = (row.symbol, row.condition)
        out.append(line(values))
    return "\n".join(out)


def verdicts(rows: Sequence[Row]) -> list[str]:
    """Per decoder: the worst p95 against one camera frame, and its overall success rate."""
    lines = []
    for name in dict.fromkeys(r.decoder for r in rows):
        mine = [r for r in rows if r.decoder == name]
        worst = max(mine, key=lambda r: r.p95_ms)
        ok = sum(r.successes for r in mine)
        calls = sum(r.calls for r in mine)
        inside = "inside" if worst.p95_ms < FRAME_BUDGET_MS else "OUTSIDE"
        lines.append(
            f"{name}: worst p95 {worst.p95_ms:.2f} ms ({worst.symbol.value}/{worst.condition}) = "
            f"{worst.p95_ms / FRAME_BUDGET_MS:.0%} of a {FRAME_BUDGET_MS:.0f} ms frame, {inside}; "
            f"exact reads {ok}/{calls} ({ok / calls:.0%})"
        )
    return lines


def failures(measurements: Iterable[Measurement]) -> list[str]:
    """Which payloads failed where, and how (nothing found, wrong bytes, timeout)."""
    tally: dict[tuple[str, str, str], list[int]] = {}
    for m in measurements:
        t = tally.setdefault((m.decoder, m.frame.condition, m.frame.payload.name), [0, 0, 0, 0])
        t[0] += len(m.results)
        t[1] += len(m.results) - m.successes
        t[2] += m.wrong
        t[3] += m.timeouts
    lines = []
    for (decoder, condition, payload), (calls, failed, wrong, timeouts) in tally.items():
        if failed:
            how = []
            if wrong:
                how.append(f"{wrong} wrong bytes")
            if timeouts:
                how.append(f"{timeouts} timeouts")
            if failed - wrong - timeouts:
                how.append(f"{failed - wrong - timeouts} nothing found")
            lines.append(f"{decoder:10s} {condition:12s} {payload:10s} {failed}/{calls} failed: {', '.join(how)}")
    return lines


def wrong_samples(measurements: Iterable[Measurement]) -> list[str]:
    """One example of each distinct wrong answer, next to what was expected."""
    seen: set[tuple[str, bytes]] = set()
    lines = []
    for m in measurements:
        for r in m.results:
            if r is not None and r != m.frame.payload.data and (m.decoder, r) not in seen:
                seen.add((m.decoder, r))
                lines.append(f"{m.decoder} on {m.frame.payload.name}: got {r!r}\n    expected {m.frame.payload.data!r}")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per decoder and frame (default 10)")
    parser.add_argument("--variants", type=int, default=None, help="placements per payload and condition (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 variant, 2 calls each (a few seconds)")
    parser.add_argument("--seed", type=int, default=2024, help="frame generator seed")
    parser.add_argument("--dmtx-timeout", type=int, default=DMTX_TIMEOUT_MS, help="pylibdmtx timeout, ms")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 2 if args.quick else 10
    if args.variants is None:
        args.variants = 1 if args.quick else 3
    if args.repeat < 1 or args.variants < 1:
        parser.error("--repeat and --variants must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    frames = make_frames(variants=args.variants, seed=args.seed)
    decoders = default_decoders(args.dmtx_timeout)
    started = time.perf_counter()
    measurements = run(frames, decoders, args.repeat)
    rows = summarise(measurements)
    elapsed = time.perf_counter() - started
    payloads = dict.fromkeys(f.payload.name for f in frames)
    print(
        f"Decode benchmark: {len(frames)} frames 640×480 grey "
        f"({len(payloads)} payloads: {', '.join(payloads)}; "
        f"{args.variants} placement(s) × {len(CONDITIONS)} conditions), {args.repeat} timed call(s) per "
        f"decoder and frame, pylibdmtx timeout {args.dmtx_timeout} ms, seed {args.seed}."
    )
    print("success = decoded bytes equal the payload exactly; times are per call, failures included.")
    print(
        f"Target: well inside one camera frame ({FRAME_BUDGET_MS:.0f} ms); "
        "'× zxing' = median / zxing-cpp median on the same frames."
    )
    print()
    print(format_table(rows))
    print()
    for line in verdicts(rows):
        print(line)
    failed = failures(measurements)
    if failed:
        print()
        print("Failures:")
        for line in failed:
            print("  " + line)
    samples = wrong_samples(measurements)
    if samples:
        print()
        print("Wrong answers (one of each):")
        for line in samples:
            print("  " + line)
    print()
    print(f"({elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
