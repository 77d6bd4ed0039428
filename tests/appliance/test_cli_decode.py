"""`comptoir decode`: one JSON object per code, and an exit status that tells valid / invalid / unreadable.

The command is run as a separate process, as a back-office script or a support engineer would.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from drivers.imaging import Symbol, render, save_png
from sandbox.samples import all_samples
from sandbox.twoddoc_issuer import write_trust_dir

SAMPLES = {sample.name: sample for sample in all_samples()}
COMPTOIR = shutil.which("comptoir", path=str(Path(sys.executable).parent))


def decode(*args: str, stdin: bytes = b"") -> tuple[int, list[dict[str, Any]], str]:
    assert COMPTOIR, "the comptoir console script is installed in the virtual environment"
    done = subprocess.run([COMPTOIR, "decode", *args], input=stdin, capture_output=True, timeout=60, check=False)
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    return done.returncode, lines, done.stderr.decode()


def test_a_valid_box_read_from_stdin_prints_its_fields_and_exits_0() -> None:
    payload = SAMPLES["box-doliprane"].payload
    status, lines, _ = decode(stdin=payload)
    assert status == 0
    assert lines == [
        {
            "kind": "gs1",
            "valid": True,
            "fields": {
                "gtin": "03400930000120",
                "cip13": "3400930000120",
                "expiry": "2027-05-31",
                "lot": "AB12",
                "serial": "SN0000123456",
            },
            "errors": [],
            "raw": base64.b64encode(payload).decode(),
        }
    ]


def test_a_line_ending_from_echo_is_not_part_of_the_code() -> None:
    status, lines, _ = decode(stdin=b"EP7K2Q-9XWM-4TDA-LR8C\n")
    assert status == 0
    assert lines[0]["kind"] == "eprescription"
    assert base64.b64decode(lines[0]["raw"]) == b"EP7K2Q-9XWM-4TDA-LR8C"


def test_a_wrong_nir_key_is_recognised_but_invalid_and_exits_1() -> None:
    status, lines, _ = decode(stdin=SAMPLES["ins-wrong-key"].payload)
    assert status == 1
    assert lines[0]["kind"] == "ins-datamatrix"
    assert lines[0]["valid"] is False
    assert lines[0]["errors"] == ["NIR key 00 does not match, expected 18"]
    assert lines[0]["fields"]["matricule"] == "175059935004200"


def test_unrecognised_bytes_exit_2() -> None:
    status, lines, _ = decode(stdin=b"\x00\x01 not a code")
    assert status == 2
    assert [line["kind"] for line in lines] == ["unknown"]


def test_an_image_with_several_codes_prints_one_line_per_code(tmp_path: Path) -> None:
    page = np.full((480, 640), 255, dtype=np.uint8)
    for (row, col), name in zip([(40, 40), (40, 360), (260, 200)], ["ins", "box-doliprane", "apcv"], strict=True):
        sample = SAMPLES[name]
        code = render(sample.payload, Symbol(sample.symbol), gs1=sample.gs1)
        page[row : row + code.shape[0], col : col + code.shape[1]] = code
    save_png(page, tmp_path / "counter.png")
    status, lines, _ = decode("--image", str(tmp_path / "counter.png"))
    assert status == 0
    assert sorted(line["kind"] for line in lines) == ["apcv", "gs1", "ins-datamatrix"]
    box = next(line for line in lines if line["kind"] == "gs1")
    assert b"\x1d" in base64.b64decode(box["raw"])


def test_a_signed_2d_doc_is_valid_only_with_its_key_in_the_trust_directory(tmp_path: Path) -> None:
    sample = SAMPLES["2ddoc-address"]
    save_png(render(sample.payload, Symbol.DATAMATRIX), tmp_path / "proof.jpg")
    write_trust_dir(tmp_path / "trust")

    status, lines, _ = decode("--image", str(tmp_path / "proof.jpg"))
    assert (status, lines[0]["fields"]["signature"], lines[0]["valid"]) == (1, "unknown-key", False)

    status, lines, _ = decode("--image", str(tmp_path / "proof.jpg"), "--trust", str(tmp_path / "trust"))
    fields = lines[0]["fields"]
    assert status == 0
    assert (fields["version"], fields["ca_id"], fields["cert_id"]) == ("04", "FR00", "TS01")
    assert (fields["issue_date"], fields["signature_date"]) == ("2026-10-01", "2026-10-02")
    assert fields["data"]["13"] == "DURAND"
    assert fields["signature"] == "valid"


def test_a_forged_2d_doc_is_invalid(tmp_path: Path) -> None:
    write_trust_dir(tmp_path)
    status, lines, _ = decode("--trust", str(tmp_path), stdin=SAMPLES["2ddoc-forged"].payload)
    assert status == 1
    assert lines[0]["fields"]["signature"] == "invalid"


def test_an_image_without_a_code_exits_2_and_says_so(tmp_path: Path) -> None:
    save_png(np.full((100, 100), 255, dtype=np.uint8), tmp_path / "blank.png")
    status, lines, err = decode("--image", str(tmp_path / "blank.png"))
    assert (status, lines) == (2, [])
    assert "no QR code or DataMatrix found" in err


@pytest.mark.parametrize("content", [None, b"not an image"])
def test_an_unreadable_image_exits_2_with_a_message(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "photo.png"
    if content is not None:
        path.write_bytes(content)
    status, lines, err = decode("--image", str(path))
    assert (status, lines) == (2, [])
    assert "cannot read image" in err


def test_a_bad_trust_directory_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("nope")
    status, _, err = decode("--trust", str(tmp_path), stdin=SAMPLES["ins"].payload)
    assert status == 2
    assert "key.pem" in err


def test_the_step_expectation_decides_an_unpatterned_opaque_code() -> None:
    status, lines, _ = decode("--expect", "apcv", stdin=b"VENDOR-CONTEXT-1234")
    assert status == 0
    assert lines[0]["kind"] == "apcv"
