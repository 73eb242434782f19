"""The rollout's population ramp as a Locust load shape: the learner population goes
5K → 10K → 25K → 50K (rollout gate 2 in services/web/gates.json, planned at one stage an hour,
then 50K sustained), and the simulated users grow with it.

Use it beside the locustfile, whose `Onboarding` user reads `current_learners()` and posts it to
`/api/v1/system/scale`:

    locust -f loadtests/locustfile.py,loadtests/shapes.py --headless

Durations are the planned ramp's, multiplied by a factor so a run fits a working session:

    TOOLOO_RAMP_STAGES      population per stage              (default 5000,10000,25000,50000)
    TOOLOO_RAMP_FACTOR      multiplier on the plan's 1 h per stage (default 1/60: 1 min a stage)
    TOOLOO_RAMP_STAGE_S     seconds per stage (overrides the factor)
    TOOLOO_RAMP_SUSTAIN_S   seconds the last stage is held after the ramp (default one stage)
    TOOLOO_RAMP_USERS_PER_K simulated users per 1,000 learners (default 1, at least 3 users)

This file imports nothing from the project: Locust loads it by path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from locust import LoadTestShape

SEED_STAGE_S = 3600.0  # the planned rollout ramps one stage an hour


@dataclass(frozen=True, slots=True)
class Stage:
    learners: int
    ends_at: float  # seconds since the start of the run
    users: int


def stages_from_env(env: dict[str, str] | None = None) -> list[Stage]:
    env = dict(os.environ if env is None else env)
    populations = [
        int(x) for x in env.get("TOOLOO_RAMP_STAGES", "5000,10000,25000,50000").split(",") if x
    ]
    if not populations or any(p < 0 for p in populations):
        raise ValueError("TOOLOO_RAMP_STAGES must list non-negative learner counts")
    if env.get("TOOLOO_RAMP_STAGE_S"):
        stage_s = float(env["TOOLOO_RAMP_STAGE_S"])
    else:
        stage_s = SEED_STAGE_S * _fraction(env.get("TOOLOO_RAMP_FACTOR", "1/60"))
    sustain_s = float(env.get("TOOLOO_RAMP_SUSTAIN_S", stage_s))
    per_k = float(env.get("TOOLOO_RAMP_USERS_PER_K", "1"))
    if stage_s <= 0 or sustain_s < 0 or per_k <= 0:
        raise ValueError("ramp durations and users per 1K learners must be positive")
    stages = []
    elapsed = 0.0
    for i, learners in enumerate(populations):
        elapsed += stage_s + (sustain_s if i == len(populations) - 1 else 0.0)
        stages.append(Stage(learners, elapsed, max(3, round(learners / 1000 * per_k))))
    return stages


def _fraction(text: str) -> float:
    if "/" in text:
        num, den = text.split("/", 1)
        return float(num) / float(den)
    return float(text)


class SeedRampShape(LoadTestShape):
    """Stage by stage: population target and user count; stops after the last stage."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = stages_from_env()

    def _stage(self) -> Stage | None:
        elapsed = self.get_run_time()
        for stage in self.stages:  # bounded: a handful of stages
            if elapsed < stage.ends_at:
                return stage
        return None

    def current_learners(self) -> int | None:
        stage = self._stage()
        return stage.learners if stage is not None else None

    def tick(self) -> tuple[int, float] | None:
        stage = self._stage()
        if stage is None:
            return None
        return stage.users, max(1.0, stage.users / 5)
