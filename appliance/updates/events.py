"""Stage events of an update, for the back office (DESIGN §6), and how they reach it.

Every stage of an install transaction produces one event::

    {"type": "update.stage", "box": "<box id>", "txn": "0.2.0-1a2b3c4d", "from": "0.1.0", "to": "0.2.0",
     "stage": "migrated", "ok": true, "at": 1718000000.0, "detail": {"schema": 8}}

``key`` (``update:<txn>:<stage>``) is the idempotency key: recovery may re-emit a stage after a power
cut, and the back office applies each key once. The stream is ``updates``; the sync worker (MQTT,
another engineer's) publishes it like every outbox stream, QoS 1, to ``comptoir/<box>/events/update``.
:class:`OutboxStageReporter` writes them into the durable outbox; the back office feeds the ``stage``
values ``committed`` / ``rolled_back`` / ``aborted`` into :mod:`appliance.updates.rollout`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

STREAM = "updates"

STAGES = (
    "started",
    "downloaded",
    "installed",
    "migrated",
    "verified",
    "switching",
    "switched",
    "restarted",
    "healthy",
    "committed",
    "rollback",
    "rolled_back",
    "aborted",
    "refused",
)
TERMINAL = frozenset({"committed", "rolled_back", "aborted", "refused"})


@dataclass(frozen=True, slots=True)
class StageEvent:
    box: str
    txn: str
    from_version: str | None
    to_version: str
    stage: str
    ok: bool
    at: float
    detail: dict[str, Any]

    @property
    def key(self) -> str:
        return f"update:{self.txn}:{self.stage}"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "update.stage",
            "box": self.box,
            "txn": self.txn,
            "from": self.from_version,
            "to": self.to_version,
            "stage": self.stage,
            "ok": self.ok,
            "at": self.at,
            "detail": self.detail,
        }


class StageReporter(Protocol):
    def __call__(self, event: StageEvent) -> None: ...


class MemoryStageReporter:
    """Keeps the events in a list (tests, the bench, a dry run)."""

    def __init__(self) -> None:
        self.events: list[StageEvent] = []

    def __call__(self, event: StageEvent) -> None:
        self.events.append(event)

    def stages(self) -> list[str]:
        return [e.stage for e in self.events]


class OutboxStageReporter:
    """Writes each event into the box's durable outbox (stream ``updates``), one transaction per event.

    A failure to report never stops an install or a roll-back: the journal is the truth, and the
    event is logged and dropped (recovery re-emits the terminal stage)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def __call__(self, event: StageEvent) -> None:
        import logging

        from appliance.store import outbox
        from appliance.store.database import transaction
        from appliance.updates.compat import open_compatible

        try:
            db = open_compatible(self.db_path)
        except Exception:
            logging.getLogger(__name__).warning("update event %s not queued: database unavailable", event.key)
            return
        try:
            with transaction(db) as conn:
                outbox.enqueue(conn, stream=STREAM, key=event.key, payload=event.to_json(), now=event.at)
        except Exception:
            logging.getLogger(__name__).exception("update event %s not queued", event.key)
        finally:
            db.close()


def make_event(
    box: str, txn: str, from_version: str | None, to_version: str, stage: str, *, ok: bool = True, **detail: Any
) -> StageEvent:
    return StageEvent(box, txn, from_version, to_version, stage, ok, time.time(), dict(detail))
