"""The ramp controller's rule, without I/O: when to raise the population target to the next
stage, and when to throttle back to the previous one.

Stages are population targets (strictly increasing), each with a hold time. The reading is the
active gate's criteria that the fleet measures, apart from the population ones (`learners`,
`regions`: the ramp is what moves them, so judging a stage on the population it has not reached
yet would be circular):

- green: every such criterion passes (or is idle: no demand). Green must hold without a break
  for the stage's hold time (and the stage must have lasted that long) before the ramp advances.
- red: one of them fails. The ramp applies rollback level 1: a held target at the previous
  stage (at the first stage, held where it is). A red right after a throttle waits out that
  stage's hold time before throttling further, so one bad minute does not unwind the ramp.
- unknown: metrics unavailable, or nothing measured: no action, and a green run starts over.

`step` is pure (tested on recorded series); ramp_runner.py reads the gates, calls it and acts.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Reading = Literal["green", "red", "unknown"]
Action = Literal["none", "start", "advance", "throttle"]
POPULATION_METRICS = frozenset({"learners", "regions"})
SATISFIED = frozenset({"pass", "idle"})
MAX_STAGES = 64


class BadStages(ValueError):
    """Stages that are not a strictly increasing list of positive targets, or holds that do not
    match them."""


def parse_ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise BadStages(f"{what} must be comma-separated integers, got {text[:100]!r}") from None


def check_stages(stages: Sequence[int], holds_s: Sequence[float]) -> tuple[list[int], list[float]]:
    """The stages and one hold per stage (a single hold applies to all); BadStages otherwise."""
    if not 1 <= len(stages) <= MAX_STAGES:
        raise BadStages(f"1..{MAX_STAGES} stages, got {len(stages)}")
    if any(s < 1 for s in stages) or any(b <= a for a, b in itertools.pairwise(stages)):
        raise BadStages(f"stages must be positive and strictly increasing: {list(stages)[:10]}")
    if len(holds_s) == 1:
        holds_s = list(holds_s) * len(stages)
    if len(holds_s) != len(stages) or any(h <= 0 for h in holds_s):
        raise BadStages("one positive hold per stage, or a single hold for all")
    return list(stages), [float(h) for h in holds_s]


@dataclass(frozen=True, slots=True)
class RampState:
    enabled: bool = False
    stage: int = -1  # index into the stages; -1 before the first step
    since_ms: int = 0  # when the current stage began
    green_since_ms: int | None = None  # start of the current unbroken green run
    throttled: bool = False  # the current stage was entered by a throttle
    last_action: dict[str, Any] | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    state: RampState
    target: int | None = None  # the scale target to set (with `hold`)
    hold: bool = False
    reason: str = ""


def reading(result: Mapping[str, Any]) -> tuple[Reading, str]:
    """The active gate's measured, non-population criteria: (reading, why)."""
    active = result.get("active_gate")
    gate = next((g for g in result.get("gates", []) if g.get("id") == active), None)
    if gate is None:
        return "unknown", "no active gate"
    criteria = [
        c
        for c in gate.get("criteria", [])
        if c.get("metric") and c["metric"] not in POPULATION_METRICS
    ]
    failed = [c["id"] for c in criteria if c.get("status") == "fail"]
    if failed:
        return "red", f"{active}: {', '.join(failed)} failed"
    if criteria and all(c.get("status") in SATISFIED for c in criteria):
        return "green", f"{active}: every measured criterion passes"
    return "unknown", f"{active}: not every criterion is measured"


def start_stage(stages: Sequence[int], target: int | None) -> int:
    """Where an enabled ramp starts: the highest stage at or below the current target (the
    first stage when there is none)."""
    below = [i for i, s in enumerate(stages) if target is not None and s <= target]
    return below[-1] if below else 0


def step(
    state: RampState,
    stages: Sequence[int],
    holds_s: Sequence[float],
    read: Reading,
    why: str,
    now_ms: int,
    current_target: int | None,
) -> Decision:
    """One check of an enabled ramp."""
    if not state.enabled:
        return Decision("none", state, reason="disabled")
    if state.stage < 0 or state.stage >= len(stages):
        stage = start_stage(stages, current_target)
        started = RampState(True, stage, now_ms, None, False, state.last_action)
        return Decision("start", started, stages[stage], False, f"ramp started at stage {stage}")
    hold_ms = int(holds_s[state.stage] * 1000)
    if read == "red":
        if state.throttled and now_ms - state.since_ms < hold_ms:
            return Decision("none", replace(state, green_since_ms=None), reason=f"red, {why}")
        back = max(0, state.stage - 1)
        new = RampState(True, back, now_ms, None, True, state.last_action)
        return Decision("throttle", new, stages[back], True, f"red: {why}")
    if read == "unknown":
        return Decision("none", replace(state, green_since_ms=None), reason=why)
    green_since = state.green_since_ms if state.green_since_ms is not None else now_ms
    held = replace(state, green_since_ms=green_since)
    if state.stage + 1 >= len(stages):
        return Decision("none", held, reason="last stage reached")
    if now_ms - green_since < hold_ms or now_ms - state.since_ms < hold_ms:
        return Decision("none", held, reason=f"green for {(now_ms - green_since) // 1000} s")
    nxt = state.stage + 1
    new = RampState(True, nxt, now_ms, None, False, state.last_action)
    return Decision("advance", new, stages[nxt], False, f"green for {hold_ms // 1000} s: {why}")
