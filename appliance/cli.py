"""The ``comptoir`` command: the one composition root that wires adapters to the core.

Adapters (drivers, sandbox) are imported inside the command that needs them, so importing the
core starts nothing and pulls in no hardware library.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.codes.config import CodeConfig, ConfigError
from appliance.codes.kinds import CodeKind, DecodedCode
from appliance.codes.reader import CodeReader
from appliance.codes.trust import TrustList, TrustListError

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2


def _reader(trust_dirs: Sequence[Path], config_path: Path | None) -> CodeReader:
    trust = TrustList()
    for directory in trust_dirs:
        trust.update(TrustList.from_directory(directory))
    config = CodeConfig.from_toml(config_path) if config_path else CodeConfig()
    return CodeReader(trust, config)


def exit_status(results: Sequence[DecodedCode]) -> int:
    """0 when every code is valid, 1 when one is recognised but invalid, 2 when nothing was understood."""
    if not results or all(r.kind is CodeKind.UNKNOWN for r in results):
        return EXIT_UNREADABLE
    return EXIT_VALID if all(r.valid for r in results) else EXIT_INVALID


def _strip_terminator(data: bytes) -> bytes:
    """A trailing CR/LF is the end of the line (echo, a scanner's terminator), not part of the code."""
    return data.rstrip(b"\r\n")


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        reader = _reader(args.trust, args.config)
    except (TrustListError, ConfigError) as exc:
        print(f"comptoir decode: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    expect = frozenset(args.expect) if args.expect else None
    results: list[DecodedCode] = []
    if args.image is not None:
        from drivers.imaging import ImageError, decode_image

        try:
            found = decode_image(args.image)
        except ImageError as exc:
            print(f"comptoir decode: {exc}", file=sys.stderr)
            return EXIT_UNREADABLE
        if not found:
            print(f"comptoir decode: no QR code or DataMatrix found in {args.image}", file=sys.stderr)
        results = [reader.read(code.raw, symbology=code.symbology, expect=expect) for code in found]
    else:
        results = [reader.read(_strip_terminator(sys.stdin.buffer.read()), expect=expect)]
    for result in results:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    return exit_status(results)


def cmd_demo(args: argparse.Namespace) -> int:
    """The sample codes decoded (quick), then the kiosk against the sandbox with simulated devices."""
    import os

    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    from sandbox.demo import run_demo
    from ui.demo import run_kiosk_demo

    codes = run_demo(args.out / "codes") if not args.no_codes else 0
    windowed = True if args.window else (False if args.headless else None)
    kiosk = run_kiosk_demo(args.out, windowed=windowed, preset=args.display)
    return codes or kiosk


def cmd_scenario(args: argparse.Namespace) -> int:
    from appliance.scenario import run_scenario

    return run_scenario(args.file, db_path=args.db, key_path=args.key, sandbox_url=args.sandbox)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="comptoir", description="The comptoir pharmacy counter appliance.")
    commands = parser.add_subparsers(dest="command", required=True)

    decode = commands.add_parser("decode", help="say what a scanned code contains, as JSON lines")
    decode.add_argument("--image", type=Path, help="decode every code in this PNG or JPEG instead of stdin")
    decode.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="add the 2D-DOC public keys in DIR (PEM files named <CA id>-<certificate id>.pem)",
    )
    decode.add_argument("--config", type=Path, help="TOML file with the [codes] patterns and attestation layout")
    decode.add_argument(
        "--expect",
        type=CodeKind,
        action="append",
        choices=[k for k in CodeKind if k is not CodeKind.UNKNOWN],
        metavar="KIND",
        help="a kind the current step expects (decides an opaque code that matches no pattern)",
    )
    decode.set_defaults(func=cmd_decode)

    demo = commands.add_parser("demo", help="the kiosk against the sandbox with simulated devices")
    demo.add_argument("--out", type=Path, default=Path("demo-out"), help="where screenshots and transcripts go")
    shown = demo.add_mutually_exclusive_group()
    shown.add_argument("--headless", action="store_true", help="offscreen scripted session even with a display")
    shown.add_argument("--window", action="store_true", help="a window with the developer panel")
    demo.add_argument("--display", default="800x480", choices=["800x480", "1280x800"], help="panel resolution")
    demo.add_argument("--no-codes", action="store_true", help="skip decoding the sample codes first")
    demo.set_defaults(func=cmd_demo)

    scenario = commands.add_parser("scenario", help="play a scripted counter session against the sandbox")
    scenario.add_argument("file", type=Path, help="JSON-lines script (docs/scenarios.md)")
    scenario.add_argument("--db", type=Path, help="SQLite file to use (a temporary one by default)")
    scenario.add_argument("--key", type=Path, help="field key file (default: <db>.key, created if missing)")
    scenario.add_argument("--sandbox", metavar="URL", help="use this sandbox instead of starting one")
    scenario.set_defaults(func=cmd_scenario)

    from appliance.payments.cli import register as register_payments_commands
    from appliance.store.cli import register as register_store_commands
    from appliance.updates.cli import register as register_update_commands
    from sandbox.server import add_command as add_sandbox_command
    from sync.backoffice.cli import register as register_backoffice_commands
    from sync.service import register as register_sync_commands
    from ui.production import register as register_kiosk_command

    register_store_commands(commands)
    register_payments_commands(commands)
    register_update_commands(commands)
    register_sync_commands(commands)
    register_backoffice_commands(commands)
    add_sandbox_command(commands)
    register_kiosk_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
