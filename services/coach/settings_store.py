"""Coach settings: the validated model and its encoding as one Redis hash field per setting
(`keys.coach_settings`, read and written by CoachStore).

Every replica and every restart sees the same values, and the loop re-reads them each tick (one
HGETALL), so a change made through any replica applies live. Scalars are stored as plain strings
(`minAvgMastery` and `maxBelow80` must stay plain numbers: the round-commit script reads them to
decide readiness); the fast-lane settings are the fields `fastLane.enabled`, `fastLane.weight`, …

Live values rule: while the fast lane is enabled, the loop runs with the fast lane's `intervalMs`,
`microBatchesPerTick` and `batchSize` (a "rush mode"); while it is disabled, with the
top-level ones, and fast-lane members are scheduled like everyone else (weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.readiness import DEFAULT_MAX_BELOW, DEFAULT_MIN_AVG_MASTERY

FAST_LANE_PREFIX = "fastLane."


class FastLaneSettings(BaseModel):
    """The fast lane: its pace (a rush mode, see the module docstring), its weight, and who is in
    it. Members are the learners an operator pinned in, plus, with `auto`, learners close to
    readiness: a learner enters when a round of the coach leaves it not ready with an average
    mastery of at least `minAvgMastery - autoMargin`, while fewer than `autoMax` learners are
    automatic members (enforced per shard as its share, ceil(autoMax / shards)); it leaves when a
    round makes it ready, or `windowS` after it entered, and a learner whose window lapsed cannot
    enter again for another `windowS` (it was close and did not make it: it yields its place).
    Learners pinned out never enter. Pins (in and out together) are bounded by `maxPinned`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    enabled: bool = True
    weight: int = Field(2, ge=1, le=10)
    intervalMs: int = Field(600, ge=50, le=60_000)
    microBatchesPerTick: int = Field(4, ge=1, le=64)
    batchSize: int = Field(4, ge=1, le=1000)
    auto: bool = True
    autoMargin: float = Field(10, ge=0, le=100)
    autoMax: int = Field(1000, ge=0, le=100_000)
    windowS: int = Field(600, ge=1, le=86_400)
    maxPinned: int = Field(1000, ge=0, le=100_000)


class CoachSettings(BaseModel):
    """The full, validated settings, with the defaults a fresh fleet starts from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    minAvgMastery: float = Field(DEFAULT_MIN_AVG_MASTERY, ge=0, le=100)
    maxBelow80: int = Field(DEFAULT_MAX_BELOW, ge=0, le=1000)
    intervalMs: int = Field(600, ge=50, le=60_000)
    maxRoundsPerCycle: int = Field(4, ge=1, le=50)
    microBatchesPerTick: int = Field(4, ge=1, le=64)
    batchSize: int = Field(4, ge=1, le=1000)
    aggressiveMode: bool = True
    aggressiveThreshold: float = Field(50, ge=0, le=100)
    aggressiveMultiplier: float = Field(2, ge=1, le=10)
    hyperMode: bool = False
    # Ticks sized to the population (0: off, the fixed pace below). The loop coaches every learner
    # needing it once a minute at this share: needing × coverageTarget learners a minute, cut into
    # ticks of the live interval, never fewer than microBatchesPerTick × batchSize and never more
    # than maxLearnersPerTick (so a huge queue cannot make one tick unbounded).
    coverageTarget: float = Field(0, ge=0, le=1)
    maxLearnersPerTick: int = Field(2000, ge=1, le=20_000)
    fastLane: FastLaneSettings = Field(default_factory=FastLaneSettings)

    # ---- the values the loop runs with (see the module docstring) ----------------------------
    @property
    def live_interval_ms(self) -> int:
        return self.fastLane.intervalMs if self.fastLane.enabled else self.intervalMs

    @property
    def live_micro_batches(self) -> int:
        return (
            self.fastLane.microBatchesPerTick if self.fastLane.enabled else self.microBatchesPerTick
        )

    @property
    def live_batch_size(self) -> int:
        return self.fastLane.batchSize if self.fastLane.enabled else self.batchSize

    @property
    def live_weight(self) -> int:
        return self.fastLane.weight if self.fastLane.enabled else 1

    def thresholds(self) -> dict[str, Any]:
        return self.model_dump(exclude={"fastLane"})


def bounds(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The bounds of a setting as `Field` arguments, so that a request model declaring the same
    setting (a partial update, the fast-lane call) checks and documents the bounds written here.
    """
    found: dict[str, Any] = {}
    for item in model.model_fields[name].metadata:
        if isinstance(item, annotated_types.Ge):
            found["ge"] = item.ge
        elif isinstance(item, annotated_types.Le):
            found["le"] = item.le
        else:  # a constraint this helper does not carry over would be lost silently
            raise TypeError(f"{model.__name__}.{name}: unsupported constraint {item!r}")
    return found


@dataclass(frozen=True, slots=True)
class ParsedSettings:
    settings: CoachSettings
    invalid: dict[str, str]  # fields found in Redis that did not validate (defaults used)


def _to_field(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _from_field(raw: str, annotation: Any) -> Any:
    if annotation is bool:
        return raw in ("1", "true", "True")
    if annotation is int:
        return int(raw)
    return float(raw)


def to_fields(settings: CoachSettings) -> dict[str, str]:
    fields = {name: _to_field(v) for name, v in settings.model_dump(exclude={"fastLane"}).items()}
    for name, value in settings.fastLane.model_dump().items():
        fields[FAST_LANE_PREFIX + name] = _to_field(value)
    return fields


def from_fields(raw: dict[str, str]) -> ParsedSettings:
    """Parse the hash; a field that does not parse or is out of bounds falls back to its
    default (and is reported), so one bad write cannot stop the loop."""
    settings = CoachSettings()
    invalid: dict[str, str] = {}
    for field, value in raw.items():
        if field.startswith(FAST_LANE_PREFIX):
            target: BaseModel = settings.fastLane
            name = field[len(FAST_LANE_PREFIX) :]
        else:
            target, name = settings, field
        info = type(target).model_fields.get(name)
        if info is None or name == "fastLane":
            continue  # a field of a newer version; ignore rather than fail
        try:
            setattr(target, name, _from_field(value, info.annotation))
        except (ValueError, ValidationError):
            invalid[field] = value
    return ParsedSettings(settings, invalid)


def merge(current: CoachSettings, changes: dict[str, Any]) -> CoachSettings:
    """The settings after applying `changes` (already validated by a request model); the
    result is validated again as a whole."""
    data = current.model_dump()
    fast = changes.pop("fastLane", None) or {}
    data.update(changes)
    data["fastLane"].update(fast)
    return CoachSettings.model_validate(data)
