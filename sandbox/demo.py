"""`comptoir demo`: the e-lecteur reading sample codes, then a whole counter session, until the kiosk exists.

Each sample is rendered to an image, decoded back from the PNG file with zxing-cpp, read by the
core, and what was understood is printed and written to a transcript next to the images. Then the
scripted session ``docs/scenarios/apcv-full.jsonl`` is played against the sandbox teleservices and
its transcript written as ``session.json``.
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
    session_status = _play_session(out)
    return 0 if surprises == 0 and session_status == 0 else 1


SESSION_SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "scenarios" / "apcv-full.jsonl"


def _play_session(out: Path) -> int:
    """A whole counter session on the sandbox: what each step showed, and what the patient paid."""
    from appliance.scenario import run_scenario

    printed: list[str] = []
    db = out / "counter.db"
    for stale in out.glob("counter.db*"):
        stale.unlink()
    status = run_scenario(SESSION_SCRIPT, db_path=db, key_path=None, sandbox_url=None, out=printed.append)
    (out / "session.json").write_text(printed[0] if printed else "{}", encoding="utf-8")
    report = json.loads(printed[0]) if printed else {"transcript": [], "outcome": {}}
    sys.stdout.write(f"\ncounter session ({SESSION_SCRIPT.name}), against the sandbox teleservices:\n")
    for entry in report["transcript"]:
        if "event" in entry:
            event = json.dumps(entry["event"], ensure_ascii=False)
            sys.stdout.write(f"  {entry['step']:<13} {'ok ' if entry['accepted'] else 'NO '} {event}")
            sys.stdout.write(f"  -> {entry['message']}\n" if entry.get("message") else "\n")
    for line in report["outcome"].get("receipt", []):
        sys.stdout.write(f"  | {line}\n")
    sys.stdout.write(f"session {'played as expected' if status == 0 else 'DID NOT go as expected'}\n")
    return status


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
