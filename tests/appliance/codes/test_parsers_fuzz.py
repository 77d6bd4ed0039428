"""Whatever bytes arrive, every parser answers with a result or its documented CodeError.

Random payloads and mutations of valid ones (byte flips, cuts, insertions) are thrown at each
parser and at the reader; any other exception is a bug that would crash a driver at the counter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.codes.attestation import parse_attestation
from appliance.codes.errors import CodeError
from appliance.codes.gs1 import parse_gs1
from appliance.codes.ins import HEADER, build_ins_payload, parse_ins
from appliance.codes.kinds import CodeKind
from appliance.codes.nir import parse_nir
from appliance.codes.reader import CodeReader
from sandbox.samples import MARIE, basic_samples

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = [sample.payload for sample in basic_samples()] + [build_ins_payload(MARIE)]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes] = SEEDS) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from([b"\x1d", b"\x1e", b"\x1f", b"S1"]))
        elif data:
            del data[at]
    return bytes(data)


payloads = st.binary(max_size=300) | mutated() | st.builds(lambda tail: HEADER + tail, st.binary(max_size=80))


def only_code_errors(parse: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(CodeError):
        parse(data)


@FUZZ
@given(payloads)
def test_ins_parser_raises_only_code_errors(data: bytes) -> None:
    only_code_errors(parse_ins, data)


@FUZZ
@given(payloads)
def test_gs1_parser_raises_only_code_errors(data: bytes) -> None:
    only_code_errors(parse_gs1, data)


@FUZZ
@given(payloads)
def test_attestation_parser_raises_only_code_errors(data: bytes) -> None:
    only_code_errors(parse_attestation, data)


@FUZZ
@given(st.text(max_size=20) | st.from_regex(r"[0-9 ]{13,17}|[12][0-9]{4}2[AB][0-9]{8}", fullmatch=True))
def test_nir_parser_raises_only_code_errors(text: str) -> None:
    only_code_errors(parse_nir, text)  # type: ignore[arg-type]


@FUZZ
@given(payloads, st.sets(st.sampled_from(list(CodeKind))))
def test_the_reader_never_raises_and_always_explains_an_invalid_code(data: bytes, expect: set[CodeKind]) -> None:
    result = CodeReader().read(data, expect=expect)
    assert result.raw == data
    assert result.valid or result.errors
    assert set(result.to_json()) == {"kind", "valid", "fields", "errors", "raw"}
