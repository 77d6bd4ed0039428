"""The back office's staged roll-out policy: which boxes get an offer, and when to pause (pure).

A roll-out moves a release through stages, each a share of the fleet (default 1 % canaries, then
10 %, 50 %, 100 %). A box belongs to the first stage whose share covers its *bucket*, a number in
[0, 1) from a hash of (release, box id): stable across runs, different for each release (the same
boxes are not always the canaries).

The roll-out advances to the next stage when every box offered so far has finished (``committed``,
``rolled_back`` or ``aborted``) — or a stage's ``stage_timeout`` passed since it started, boxes that
never answered counting as failures then — and at least ``min_soak`` seconds passed. It **pauses**
by itself when failures (``rolled_back``, ``aborted``) among finished boxes pass ``failure_threshold``
(a share, with at least ``min_failures`` failures, so one bad box among three canaries does not stop
a fleet but two do) — and stays paused until an operator resumes it (a new plan state).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

SUCCESS = frozenset({"committed"})
FAILURE = frozenset({"rolled_back", "aborted"})


class Phase(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    version: str
    stages: tuple[float, ...] = (0.01, 0.10, 0.50, 1.0)
    failure_threshold: float = 0.05
    min_failures: int = 2
    min_soak: float = 3600.0
    stage_timeout: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if not self.stages or list(self.stages) != sorted(self.stages) or not 0 < self.stages[0] <= self.stages[-1]:
            raise ValueError("stages must be increasing shares in (0, 1]")
        if self.stages[-1] != 1.0:
            raise ValueError("the last stage must cover the whole fleet (1.0)")


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What the back office stores between two evaluations."""

    stage: int = 0
    stage_started_at: float = 0.0
    paused: bool = False
    pause_reason: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    phase: Phase
    state: RolloutState
    offer: frozenset[str]  # boxes that should have the offer now (offered before included)
    succeeded: int
    failed: int
    waiting: int
    reason: str


def bucket(version: str, box: str) -> float:
    """The box's place in [0, 1) for this release."""
    digest = hashlib.sha256(f"{version}\x00{box}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def eligible(plan: RolloutPlan, stage: int, fleet: Iterable[str]) -> frozenset[str]:
    share = plan.stages[min(stage, len(plan.stages) - 1)]
    return frozenset(box for box in fleet if bucket(plan.version, box) < share)


def decide(
    plan: RolloutPlan,
    state: RolloutState,
    fleet: Iterable[str],
    results: Mapping[str, str],
    now: float,
) -> Decision:
    """The next step of a roll-out. ``results`` maps box -> last terminal stage reported for this
    release (``committed`` / ``rolled_back`` / ``aborted``); boxes absent have not finished."""
    boxes = list(fleet)
    offered = eligible(plan, state.stage, boxes)
    succeeded = sum(1 for b in offered if results.get(b) in SUCCESS)
    failed = sum(1 for b in offered if results.get(b) in FAILURE)
    waiting = len(offered) - succeeded - failed
    timed_out = now - state.stage_started_at >= plan.stage_timeout
    failed_or_silent = failed + waiting if timed_out else failed
    finished = succeeded + failed + (waiting if timed_out else 0)
    if state.paused:
        return Decision(Phase.PAUSED, state, offered, succeeded, failed, waiting, state.pause_reason)
    if finished and failed_or_silent >= plan.min_failures and failed_or_silent / finished > plan.failure_threshold:
        reason = (
            f"paused at stage {state.stage} ({plan.stages[state.stage]:.0%}): {failed_or_silent} of {finished} "
            f"boxes failed (threshold {plan.failure_threshold:.0%})"
        )
        paused = RolloutState(state.stage, state.stage_started_at, True, reason)
        return Decision(Phase.PAUSED, paused, offered, succeeded, failed, waiting, reason)
    last = state.stage >= len(plan.stages) - 1
    stage_done = (waiting == 0 or timed_out) and now - state.stage_started_at >= plan.min_soak
    if stage_done and last:
        return Decision(Phase.COMPLETE, state, offered, succeeded, failed, waiting, "whole fleet offered and finished")
    if stage_done:
        nxt = RolloutState(state.stage + 1, now)
        return Decision(
            Phase.ACTIVE,
            nxt,
            eligible(plan, nxt.stage, boxes),
            succeeded,
            failed,
            waiting,
            f"stage {state.stage} done; now offering {plan.stages[nxt.stage]:.0%}",
        )
    return Decision(Phase.ACTIVE, state, offered, succeeded, failed, waiting, f"stage {state.stage} in progress")


def resume(state: RolloutState, now: float) -> RolloutState:
    """An operator resumes a paused roll-out (the stage restarts its soak and timeout)."""
    return RolloutState(state.stage, now, False, "")
