"""The decode benchmark measures what it claims: behaviour only, never speed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from bench import decode
from bench.decode import Decoder, Measurement, default_decoders, format_table, main, run, summarise
from bench.frames import (
    CONDITIONS,
    HEIGHT,
    WIDTH,
    BenchFrame,
    counter_payloads,
    gtin_check_digit,
    make_frames,
)
from drivers.imaging import Frame, Symbol

REPO = Path(__file__).resolve().parents[2]


def _pixels_hash(frame: Frame) -> str:
    return hashlib.sha256(frame.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def frames() -> list[BenchFrame]:
    return make_frames(variants=1)


@pytest.fixture(scope="module")
def seen_and_measured(
    frames: list[BenchFrame],
) -> tuple[dict[str, list[str]], list[Measurement]]:
    """A quick run with every real decoder wrapped to record the pixels it was handed."""
    seen: dict[str, list[str]] = defaultdict(list)

    def spy(decoder: Decoder) -> Decoder:
        def read(frame: Frame, symbol: Symbol) -> bytes | None:
            seen[decoder.name].append(_pixels_hash(frame))
            return decoder.read(frame, symbol)

        return replace(decoder, read=read)

    measurements = run(frames, [spy(d) for d in default_decoders()], repeat=1)
    return seen, measurements


def test_frames_are_deterministic_640x480_grey(frames: list[BenchFrame]) -> None:
    again = make_frames(variants=1)
    assert [f.digest for f in again] == [f.digest for f in frames]
    assert len({f.digest for f in frames}) == len(frames)
    for f in frames:
        assert f.image.shape == (HEIGHT, WIDTH)
        assert f.image.dtype.name == "uint8"
    # The seed drives the noise, the random parts of payloads and the placement of variants past the first.
    other = make_frames(variants=1, seed=7)
    assert {f.digest for f in other if f.condition == "lowcontrast"}.isdisjoint(f.digest for f in frames)


def test_payloads_look_like_counter_codes() -> None:
    payloads = {p.name: p for p in counter_payloads()}
    box = payloads["gs1-box"]
    assert box.gs1
    assert box.symbol is Symbol.DATAMATRIX
    assert box.data.startswith(b"0103400930000120")  # GTIN-14 whose check digit is right
    assert gtin_check_digit("0340093000012") == "0"
    assert b"\x1d21" in box.data
    assert payloads["ins"].data.startswith(b"IS01" + b"0" * 22 + b"S1")
    assert b"S21.2.250.1.213.1.4.8\x1dS3" in payloads["ins"].data
    assert len(payloads["2d-doc"].data) == 200
    assert payloads["2d-doc"].data.startswith(b"DC04")
    assert payloads["qr-opaque"].symbol is Symbol.QR
    assert len(payloads["qr-opaque"].data) == 100


def test_every_decoder_gets_the_same_frames(
    frames: list[BenchFrame], seen_and_measured: tuple[dict[str, list[str]], list[Measurement]]
) -> None:
    seen, measurements = seen_and_measured
    by_symbol = {symbol: {_pixels_hash(f.image) for f in frames if f.payload.symbol is symbol} for symbol in Symbol}
    # zxing-cpp reads every frame; each peer reads every frame of its symbology, and only those.
    assert set(seen["zxing-cpp"]) == by_symbol[Symbol.DATAMATRIX] | by_symbol[Symbol.QR]
    assert set(seen["pylibdmtx"]) == by_symbol[Symbol.DATAMATRIX]
    assert set(seen["pyzbar"]) == by_symbol[Symbol.QR]
    # And every measurement names the frame it timed, the same one for every decoder.
    digests: dict[str, set[str]] = defaultdict(set)
    for m in measurements:
        assert m.frame_digest == m.frame.digest
        digests[m.decoder].add(m.frame_digest)
    dm = {f.digest for f in frames if f.payload.symbol is Symbol.DATAMATRIX}
    assert digests["pylibdmtx"] == dm
    assert dm <= digests["zxing-cpp"]


def test_zxing_reads_every_clean_frame_exactly(
    seen_and_measured: tuple[dict[str, list[str]], list[Measurement]],
) -> None:
    _, measurements = seen_and_measured
    clean = [m for m in measurements if m.decoder == "zxing-cpp" and m.frame.condition == "clean"]
    assert {m.frame.payload.name for m in clean} == {p.name for p in counter_payloads()}
    for m in clean:
        assert m.results == (m.frame.payload.data,)
        assert m.successes == 1
    gs1 = next(m for m in clean if m.frame.payload.gs1)
    assert gs1.results[0] is not None
    assert b"\x1d" in gs1.results[0]


def test_the_table_has_a_row_per_decoder_and_condition(
    seen_and_measured: tuple[dict[str, list[str]], list[Measurement]],
) -> None:
    _, measurements = seen_and_measured
    rows = summarise(measurements)
    expected = {
        (decoder, symbol, condition)
        for decoder, symbols in (
            ("zxing-cpp", list(Symbol)),
            ("pylibdmtx", [Symbol.DATAMATRIX]),
            ("pyzbar", [Symbol.QR]),
        )
        for symbol in symbols
        for condition in CONDITIONS
    }
    assert [(r.decoder, r.symbol, r.condition) for r in rows] != []
    assert {(r.decoder, r.symbol, r.condition) for r in rows} == expected
    assert len(rows) == len(expected)
    for r in rows:
        assert 0 <= r.successes <= r.calls
        assert r.median_ms <= r.p95_ms
        assert r.vs_zxing is not None
    table = format_table(rows).splitlines()
    assert "p95/33ms" in table[0]
    body = [line.split() for line in table[2:] if line]
    assert [(cells[2], cells[0], cells[1]) for cells in body] == [
        (r.decoder, r.symbol.value, r.condition) for r in rows
    ]


def test_a_timeout_is_a_failed_read(frames: list[BenchFrame]) -> None:
    frame = frames[0]
    m = Measurement("slow", frame, frame.digest, (480.0, 2.0, 3.0), (None, None, frame.payload.data), 500)
    assert (m.successes, m.timeouts, m.wrong) == (1, 1, 0)
    row = summarise([m], reference="slow")[0]
    assert (row.successes, row.calls, row.timeouts) == (1, 3, 1)


def test_main_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "33 ms" in out
    for name in ("zxing-cpp", "pylibdmtx", "pyzbar"):
        assert any(line.startswith(name + ":") for line in out.splitlines())
    assert 33 < decode.FRAME_BUDGET_MS < 34


def test_the_script_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "decode.py"), "--quick", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "zxing-cpp" in done.stdout
