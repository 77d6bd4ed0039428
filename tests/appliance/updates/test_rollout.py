"""The back office's staged roll-out policy (pure): canaries first, stages advance when finished and
soaked, automatic pause past the failure threshold."""

from __future__ import annotations

import pytest

from appliance.updates.rollout import Phase, RolloutPlan, RolloutState, bucket, decide, eligible, resume

FLEET = [f"box-{i:04d}" for i in range(2000)]
HOUR = 3600.0


def test_buckets_are_stable_uniform_and_differ_per_release():
    assert bucket("0.2.0", "box-0001") == bucket("0.2.0", "box-0001")
    canaries = eligible(RolloutPlan("0.2.0"), 0, FLEET)
    assert 5 <= len(canaries) <= 40  # about 1 % of 2000
    assert canaries != eligible(RolloutPlan("0.3.0"), 0, FLEET)
    assert canaries <= eligible(RolloutPlan("0.2.0"), 1, FLEET)  # a stage includes the previous ones


def test_stages_advance_when_every_offered_box_finished_and_soaked():
    plan = RolloutPlan("0.2.0")
    state = RolloutState(0, 0.0)
    first = decide(plan, state, FLEET, {}, now=10.0)
    assert first.phase is Phase.ACTIVE and first.waiting == len(first.offer) and first.state == state
    results = dict.fromkeys(first.offer, "committed")
    assert decide(plan, state, FLEET, results, now=HOUR / 2).state.stage == 0  # not soaked yet
    nxt = decide(plan, state, FLEET, results, now=HOUR)
    assert nxt.state.stage == 1 and len(nxt.offer) > len(first.offer)
    state = nxt.state
    for stage in (1, 2, 3):
        offered = eligible(plan, stage, FLEET)
        results.update(dict.fromkeys(offered, "committed"))
        decision = decide(plan, state, FLEET, results, now=state.stage_started_at + HOUR)
        state = decision.state
    assert decision.phase is Phase.COMPLETE and len(decision.offer) == len(FLEET)


def test_one_failed_canary_does_not_pause_but_two_do():
    plan = RolloutPlan("0.2.0")
    state = RolloutState(0, 0.0)
    offered = sorted(eligible(plan, 0, FLEET))
    results = dict.fromkeys(offered, "committed")
    results[offered[0]] = "rolled_back"
    assert decide(plan, state, FLEET, results, now=60.0).phase is Phase.ACTIVE
    results[offered[1]] = "aborted"
    paused = decide(plan, state, FLEET, results, now=60.0)
    assert paused.phase is Phase.PAUSED and paused.state.paused and "2 of" in paused.reason
    # paused stays paused (no new offers beyond the stage) until an operator resumes
    again = decide(plan, paused.state, FLEET, dict.fromkeys(offered, "committed"), now=10 * HOUR)
    assert again.phase is Phase.PAUSED and again.offer == paused.offer
    resumed = resume(paused.state, now=10 * HOUR)
    assert decide(plan, resumed, FLEET, dict.fromkeys(offered, "committed"), now=11 * HOUR).state.stage == 1


def test_silent_boxes_count_as_failures_after_the_stage_timeout():
    plan = RolloutPlan("0.2.0", stage_timeout=6 * HOUR)
    offered = sorted(eligible(plan, 0, FLEET))
    results = {offered[0]: "committed"}
    assert decide(plan, RolloutState(0, 0.0), FLEET, results, now=5 * HOUR).phase is Phase.ACTIVE
    late = decide(plan, RolloutState(0, 0.0), FLEET, results, now=6 * HOUR)
    assert late.phase is Phase.PAUSED


@pytest.mark.parametrize("stages", [(), (0.5, 0.1, 1.0), (0.1, 0.5)])
def test_bad_plans_are_refused(stages: tuple[float, ...]):
    with pytest.raises(ValueError):
        RolloutPlan("0.2.0", stages=stages)
