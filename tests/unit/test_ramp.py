"""The ramp controller's rule on recorded series: the reading of the active gate (population
criteria left out), the start, advancing only after an unbroken green hold, the throttle back
one stage on red (and waiting out a stage before throttling further), the last stage, and the
stages' validation."""

from __future__ import annotations

import pytest

from services.web.ramp import (
    BadStages,
    RampState,
    check_stages,
    parse_ints,
    reading,
    start_stage,
    step,
)

STAGES = [10, 20, 30]
HOLDS = [60.0, 60.0, 60.0]
S = 1000  # ms


def _gate(*criteria: tuple[str, str]) -> dict:
    return {
        "active_gate": "g1",
        "gates": [
            {"id": "g0", "criteria": [{"id": "x", "metric": "error_rate_pct", "status": "fail"}]},
            {
                "id": "g1",
                "criteria": [
                    {"id": f"c{i}", "metric": m, "status": st} for i, (m, st) in enumerate(criteria)
                ],
            },
        ],
    }


def test_reading_judges_the_active_gate_without_its_population_criteria() -> None:
    green = _gate(("error_rate_pct", "pass"), ("coach.demand_throughput.p10", "idle"),
                  ("learners", "fail"), ("regions", "fail"), (None, "not_measured"))  # fmt: skip
    assert reading(green)[0] == "green"
    red = _gate(("error_rate_pct", "pass"), ("uptime_pct", "fail"))
    assert reading(red) == ("red", "g1: c1 failed")
    assert reading(_gate(("error_rate_pct", "not_measured")))[0] == "unknown"
    assert reading(_gate(("learners", "pass")))[0] == "unknown"  # nothing but population
    assert reading({"active_gate": None, "gates": []})[0] == "unknown"


def _run(series: list[tuple[int, str]], state: RampState, target: int | None = None):
    """Feed (second, reading) pairs; returns the actions taken, as (second, action, target,
    hold), and the final state. The scale target follows each action."""
    actions = []
    for second, read in series:
        d = step(state, STAGES, HOLDS, read, "why", second * S, target)  # type: ignore[arg-type]
        if d.action != "none":
            actions.append((second, d.action, d.target, d.hold))
            target = d.target
        state = d.state
    return actions, state


def test_start_then_advance_only_after_an_unbroken_green_hold() -> None:
    series = [(0, "green")] + [(t, "green") for t in range(10, 60, 10)]
    series += [(60, "unknown")]  # breaks the run: it starts over
    series += [(t, "green") for t in range(70, 140, 10)]
    actions, state = _run(series, RampState(enabled=True))
    assert actions == [(0, "start", 10, False), (130, "advance", 20, False)]
    assert state.stage == 1 and state.since_ms == 130 * S and state.green_since_ms is None


def test_red_throttles_one_stage_back_and_waits_out_the_stage_before_more() -> None:
    at_30 = RampState(enabled=True, stage=2, since_ms=0)
    series = [(100, "red"), (110, "red"), (150, "red"), (165, "red"), (170, "green")]
    series += [(200, "red"), (300, "red")]
    actions, state = _run(series, at_30, target=30)
    assert actions == [
        (100, "throttle", 20, True),  # level 1: held at the previous stage
        (165, "throttle", 10, True),  # still red a whole stage later: one more back
        (300, "throttle", 10, True),  # at the first stage: held where it is
    ]
    assert state.stage == 0 and state.throttled


def test_a_throttled_stage_advances_again_after_its_green_hold() -> None:
    state = RampState(enabled=True, stage=0, since_ms=0, throttled=True)
    actions, state = _run([(t, "green") for t in range(0, 140, 10)], state, target=10)
    # Each stage's green run starts with the stage: 60 s after 0, then 60 s after 70.
    assert actions == [(60, "advance", 20, False), (130, "advance", 30, False)]
    assert not state.throttled
    # The last stage: green forever changes nothing.
    actions, _ = _run([(t, "green") for t in range(140, 400, 10)], state, target=30)
    assert actions == []


def test_disabled_does_nothing_and_a_start_keeps_a_higher_target() -> None:
    assert _run([(0, "red"), (100, "green")], RampState(enabled=False))[0] == []
    assert start_stage(STAGES, None) == 0
    assert start_stage(STAGES, 25) == 1 and start_stage(STAGES, 5) == 0
    actions, state = _run([(0, "green")], RampState(enabled=True), target=25)
    assert actions == [(0, "start", 20, False)] and state.stage == 1


@pytest.mark.parametrize(
    ("stages", "holds"),
    [([10, 10], [1]), ([20, 10], [1]), ([0, 10], [1]), ([], [1]), ([10, 20], [1, 2, 3]),
     ([10, 20], [0])],
)  # fmt: skip
def test_bad_stages(stages, holds) -> None:
    with pytest.raises(BadStages):
        check_stages(stages, holds)


def test_stages_from_settings() -> None:
    assert check_stages(parse_ints("5, 10,25", "s"), parse_ints("2", "h")) == (
        [5, 10, 25],
        [2.0, 2.0, 2.0],
    )
    with pytest.raises(BadStages):
        parse_ints("5,x", "s")
