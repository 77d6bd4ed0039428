"""Runs one windowed kiosk scenario in its own process (Kivy cannot start twice in one process).

``python -m tests.ui.runner MODE OUT_DIR [PRESET] [ORIENTATION]``, with ``SDL_VIDEODRIVER=offscreen``:
writes ``OUT_DIR/result.json`` (what the test asserts on) and the screenshots. Modes: ``screens``
(every screen state), ``journey`` (a whole session by touch), ``idle`` (the idle timeout), ``slow``
(a slow teleservice). Any failure exits non-zero with the traceback on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")

from ui.config import KioskConfig


def main(argv: list[str]) -> int:
    mode, out = argv[0], Path(argv[1])
    preset = argv[2] if len(argv) > 2 else "800x480"
    orientation = argv[3] if len(argv) > 3 else "landscape"
    out.mkdir(parents=True, exist_ok=True)
    config = KioskConfig.preset(preset).with_options(fullscreen=False, orientation=orientation, thanks_s=1.0)
    from ui.app import configure_kivy

    configure_kivy(config)
    from tests.ui import scripts

    try:
        result = scripts.MODES[mode](config, out)
    except BaseException:
        traceback.print_exc()
        return 1
    (out / "result.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if not result.get("error") else 1


if __name__ == "__main__":
    started = time.monotonic()
    status = main(sys.argv[1:])
    sys.stderr.write(f"runner: {sys.argv[1]} done in {time.monotonic() - started:.1f} s, status {status}\n")
    sys.exit(status)
