"""The install journal: an append-only, fsynced JSON-lines file on the data partition.

Each line is one event of one install transaction (``txn``). A line is written with a single
``write`` on an ``O_APPEND`` descriptor and fsynced before the step it announces starts, so after a
power cut the journal says how far the install went; a torn line (the cut came mid-write) is
ignored (wherever it ends up: the next append starts on a new line), which is safe because a step
is only taken *after* its line is on disk. Boot-time recovery (:meth:`UpdateAgent.recover
<appliance.updates.agent.UpdateAgent.recover>`) reads the last transaction and finishes or undoes it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.store.sealing import fsync_directory


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal line."""

    seq: int
    txn: str
    event: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "txn": self.txn, "event": self.event, "at": self.at, **self.data}


class Journal:
    """Append-only journal of install transactions."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock

    def entries(self) -> list[Entry]:
        """Every readable line, in order (a torn or corrupt last line is skipped)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out: list[Entry] = []
        lines = raw.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                seq, txn, event, at = int(obj.pop("seq")), str(obj.pop("txn")), str(obj.pop("event")), obj.pop("at")
            except (ValueError, KeyError, TypeError):
                # A line torn by a power cut (the next append starts a new line after it). Its step
                # was never taken: a step starts only after its line is complete on disk.
                continue
            out.append(Entry(seq, txn, event, float(at), obj))
        return out

    def last_transaction(self) -> list[Entry]:
        """The entries of the most recent transaction (empty when there is none)."""
        entries = self.entries()
        if not entries:
            return []
        txn = entries[-1].txn
        return [e for e in entries if e.txn == txn]

    def append(self, txn: str, event: str, **data: Any) -> Entry:
        """Write one event durably (fsync of the file, and of its directory when it was created)."""
        existing = self.entries()
        seq = existing[-1].seq + 1 if existing else 1
        entry = Entry(seq, txn, event, self._clock(), dict(data))
        line = json.dumps(entry.to_json(), sort_keys=True, separators=(",", ":")).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            if not created and self.path.stat().st_size > 0:
                self._end_torn_line(fd)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)
        return entry

    def _end_torn_line(self, fd: int) -> None:
        """A torn last line has no newline: start the next entry on its own line."""
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                os.write(fd, b"\n")
