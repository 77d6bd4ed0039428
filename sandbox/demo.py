"""The first part of `comptoir demo`: the e-lecteur reading sample codes.

Each sample is rendered to an image, decoded back from the PNG file with zxing-cpp, read by the
core, and what was understood is printed and written to a transcript next to the images. The
counter session itself is then played on the kiosk (``ui/demo.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from appliance.codes.kinds import DecodedCode
from appliance.codes.reader import CodeReader
from appliance.codes.trust import TrustList
from drivers.imaging import Symbol, decode_image, render, save_png
from sandbox.samples import SampleCode, all_samples
from sandbox.twoddoc_issuer import write_trust_dir


def _summary(decoded: DecodedCode) -> str:
    fields = decoded.fields
    match decoded.kind.value:
        case "gs1":
            return (
                f"box CIP13 {fields['cip13']}, lot {fields['lot']}, serial {fields['serial']}, "
                f"expires {fields['expiry']}"
            )
        case "ins-datamatrix":
            return (
                f"{fields['first_names']} {fields['birth_name']}, {fields['sex']}, "
                f"born {fields['birth_date']} in {fields['birth_place']}, INS {fields['matricule']}"
            )
        case "2d-doc":
            return f"2D-DOC v{fields['version']} type {fields['doc_type']}, signature {fields['signature']}"
        case "apcv" | "eprescription":
            return f"token {fields['token']}"
        case "amc-attestation":
            return (
                f"AMC {fields['amc_number']}, member {fields['member_number']}, "
                f"{fields['valid_from']} to {fields['valid_to']}"
            )
        case _:
            return "not understood"


def run_demo(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    trust_dir = out / "trust"
    trust_dir.mkdir(exist_ok=True)
    write_trust_dir(trust_dir)
    reader = CodeReader(TrustList.from_directory(trust_dir))
    lines: list[str] = []
    surprises = 0
    for sample in all_samples():
        image = out / f"{sample.name}.png"
        save_png(render(sample.payload, Symbol(sample.symbol), gs1=sample.gs1), image)
        found = decode_image(image)
        decoded = [reader.read(code.raw, symbology=code.symbology) for code in found]
        ok = len(decoded) == 1 and decoded[0].raw == sample.payload and decoded[0].valid == sample.expect_valid
        surprises += not ok
        lines.extend(_describe(sample, image, decoded, ok))
    lines.append(f"{len(all_samples()) - surprises}/{len(all_samples())} samples understood as expected")
    transcript = "\n".join(lines) + "\n"
    (out / "transcript.txt").write_text(transcript, encoding="utf-8")
    sys.stdout.write(transcript)
    return 0 if surprises == 0 else 1


def _describe(sample: SampleCode, image: Path, decoded: list[DecodedCode], ok: bool) -> list[str]:
    head = f"{'ok ' if ok else 'BAD'} {image.name:<24} {sample.label}"
    if not decoded:
        return [head, "    nothing found in the image"]
    lines = [head]
    for result in decoded:
        verdict = "valid" if result.valid else "refused: " + "; ".join(result.errors)
        lines.append(f"    -> {result.kind.value}: {_summary(result)} [{verdict}]")
        lines.append("       " + json.dumps(result.to_json(), ensure_ascii=False))
    return lines
