"""An update agent process that installs one release and SIGKILLs itself at a named step.

``python -m tests.appliance.updates.update_worker --root DIR --db FILE --archive TAR --version V
[--kill-at STEP] [--log FILE]``: every fine-grained step name (journal events, wheels unpacked, the
temporary link created, the rename done…) is appended to ``--log`` with ``os.write`` before the step
hook returns; at ``--kill-at`` the process sends itself SIGKILL — the closest a test gets to pulling
the plug (the page cache survives, so this checks the ordering, and fsyncs cover the real cut).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from appliance.updates.layout import Layout
from tests.appliance.updates.fakes import FakeRestarter, make_agent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--kill-at")
    parser.add_argument("--log", type=Path)
    parser.add_argument("--fail-health", action="store_true")
    args = parser.parse_args()
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if args.log else None

    def on_step(step: str) -> None:
        if log_fd is not None:
            os.write(log_fd, f"{step}\n".encode())
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    layout = Layout.under(args.root)
    restarter = FakeRestarter(layout, failing=("kiosk",) if args.fail_health else ())
    agent = make_agent(layout, args.db, restarter, source=None, on_step=on_step, health_deadline=0.3)
    outcome = agent.install(args.version, archive=args.archive)
    print(outcome.result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
