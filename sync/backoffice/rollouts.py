"""Staged roll-outs run by the back office.

The policy (which boxes, when to advance, when to pause) is the pure
:func:`appliance.updates.rollout.decide`; this module is only its loop: it reads the fleet and the
boxes' ``update.stage`` events from the back office's store, asks the policy, sends ``update-offer``
commands to the boxes it newly selects, and stores the outcome (stage, pause and its reason) so that
a restart of the back office carries on where it was.

:meth:`RolloutRunner.tick` is called periodically by the back office and directly by tests with a
chosen ``now`` (the policy's soak and timeout are in seconds of that clock). With several workers, one
of them steps the roll-outs at a time: the one holding the ``rollouts`` lease in the database
(:meth:`sync.backoffice.store.BackOfficeStore.acquire_lease`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from appliance.updates.rollout import Phase, RolloutPlan, RolloutState, decide, resume
from sync.backoffice.store import BackOfficeStore

log = logging.getLogger(__name__)

STATE_OF_PHASE = {Phase.ACTIVE: "running", Phase.PAUSED: "paused", Phase.COMPLETE: "done"}


class CommandSender(Protocol):
    def __call__(self, device: str, kind: str, args: dict[str, Any]) -> str: ...


class RolloutRunner:
    """Drives every running roll-out one step per :meth:`tick`.

    ``send`` publishes a signed command and returns its id (the back office's ``send_command``);
    ``plan`` builds the policy for a version (tests shorten the soak; the defaults are production's).
    """

    def __init__(
        self,
        store: BackOfficeStore,
        send: CommandSender,
        plan: Callable[[str], RolloutPlan] = RolloutPlan,
    ) -> None:
        self.store = store
        self.send = send
        self.plan = plan

    def start(self, version: str, url: str, now: float) -> int:
        """Record a new roll-out; the first :meth:`tick` offers it to the canaries."""
        if not version or not url:
            raise ValueError("a roll-out needs a version and a url")
        return self.store.create_rollout(version, url, now)

    def _row(self, rollout: int) -> dict[str, Any]:
        for row in self.store.rollouts():
            if int(row["id"]) == rollout:
                return row
        raise ValueError(f"no roll-out {rollout}")

    def pause(self, rollout: int, reason: str, now: float) -> None:
        """An operator pauses a running roll-out: no more offers until it is resumed."""
        row = self._row(rollout)
        if row["state"] != "running":
            raise ValueError(f"roll-out {rollout} is {row['state']}, not running")
        self.store.save_rollout(
            rollout,
            state="paused",
            stage=int(row["stage"]),
            stage_started_at=float(row["stage_started_at"]),
            pause_reason=reason,
            now=now,
        )

    def resume(self, rollout: int, now: float) -> None:
        """An operator resumes a paused roll-out (by them or by the policy): its stage restarts its soak
        and timeout (:func:`appliance.updates.rollout.resume`); the next tick offers again."""
        row = self._row(rollout)
        if row["state"] != "paused":
            raise ValueError(f"roll-out {rollout} is {row['state']}, not paused")
        state = resume(RolloutState(int(row["stage"]), float(row["stage_started_at"]), True, row["pause_reason"]), now)
        self.store.save_rollout(
            rollout,
            state="running",
            stage=state.stage,
            stage_started_at=state.stage_started_at,
            pause_reason=state.pause_reason,
            now=now,
        )

    def tick(self, now: float) -> dict[str, list[str]]:
        """One step of every running roll-out; returns version -> boxes offered in this step.

        A box is offered at most once per roll-out (the offer is recorded only once published, so a
        box whose command could not be sent is tried again at the next tick). Paused and finished
        roll-outs are left alone: resuming is an operator's decision.
        """
        sent: dict[str, list[str]] = {}
        fleet = self.store.device_ids()
        for row in self.store.rollouts("running"):
            sent[row["version"]] = self._step(row, fleet, now)
        return sent

    def _step(self, row: dict[str, Any], fleet: list[str], now: float) -> list[str]:
        rollout, version = int(row["id"]), str(row["version"])
        plan = self.plan(version)
        state = RolloutState(int(row["stage"]), float(row["stage_started_at"]), False, "")
        results = self.store.update_results(version)
        decision = decide(plan, state, fleet, results, now)
        already = {o["device"] for o in self.store.offers(rollout)}
        self.store.set_offer_status(rollout, {d: results[d] for d in already if d in results})
        offered: list[str] = []
        if decision.phase is not Phase.PAUSED:
            for device in sorted(decision.offer - already):
                try:
                    command = self.send(device, "update-offer", {"version": version, "url": str(row["url"])})
                except Exception:
                    log.exception("roll-out %s: offer to %s not sent (retried at the next tick)", version, device)
                    continue
                self.store.record_offer(rollout, device, command, now)
                offered.append(device)
        else:
            log.warning("roll-out %s paused: %s", version, decision.reason)
        self.store.save_rollout(
            rollout,
            state=STATE_OF_PHASE[decision.phase],
            stage=decision.state.stage,
            stage_started_at=decision.state.stage_started_at,
            pause_reason=decision.state.pause_reason,
            now=now,
        )
        return offered

    def list(self) -> list[dict[str, Any]]:
        """Every roll-out with its stage (index and share of the fleet), counts and pause reason."""
        out = []
        for row in self.store.rollouts():
            plan = self.plan(str(row["version"]))
            offers = self.store.offers(int(row["id"]))
            stage = int(row["stage"])
            out.append(
                {
                    "id": row["id"],
                    "version": row["version"],
                    "url": row["url"],
                    "started_at": row["started_at"],
                    "state": row["state"],
                    "stage": stage,
                    "share": plan.stages[min(stage, len(plan.stages) - 1)],
                    "offered": len(offers),
                    "succeeded": sum(1 for o in offers if o["status"] == "committed"),
                    "failed": sum(1 for o in offers if o["status"] in ("rolled_back", "aborted")),
                    "paused_reason": row["pause_reason"] or None,
                    "offers": offers,
                }
            )
        return out
