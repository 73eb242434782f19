"""When a learner counts as ready for meta-learning: its average mastery is at least
`minAvgMastery` and at most `maxBelow80` of its topics are below its target threshold.

The coach owns the two values (fields of its settings hash, `keys.coach_settings`); the defaults
below are the ones used wherever the hash lacks a field: the coach's settings model, the
round-commit script (which gets them as arguments) and training's next-domain answer."""

from __future__ import annotations

from dataclasses import dataclass

from shared.keys import Keys
from shared.redis_types import FleetRedis, text_or_none

MIN_AVG_FIELD = "minAvgMastery"
MAX_BELOW_FIELD = "maxBelow80"
# Integers, as the coach stores and answers them ("75", not "75.0").
DEFAULT_MIN_AVG_MASTERY = 75
DEFAULT_MAX_BELOW = 3


@dataclass(frozen=True, slots=True)
class ReadinessThresholds:
    min_avg: float
    max_below: int

    def ready(self, avg: float, below: int) -> bool:
        return avg >= self.min_avg and below <= self.max_below


def thresholds_from(min_avg: str | None, max_below: str | None) -> ReadinessThresholds:
    """The thresholds from the hash's raw fields; a missing or unreadable field is its default."""
    return ReadinessThresholds(
        _number(min_avg, DEFAULT_MIN_AVG_MASTERY), int(_number(max_below, DEFAULT_MAX_BELOW))
    )


async def read_thresholds(redis: FleetRedis, keys: Keys) -> ReadinessThresholds:
    min_avg, max_below = await redis.hmget(keys.coach_settings, [MIN_AVG_FIELD, MAX_BELOW_FIELD])
    return thresholds_from(text_or_none(min_avg), text_or_none(max_below))


def _number(raw: str | None, default: float) -> float:
    try:
        return float(raw) if raw is not None else float(default)
    except ValueError:
        return float(default)
