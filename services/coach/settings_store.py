"""Coach settings in Redis (`keys.coach_settings`), one hash field per setting.

Every replica and every restart sees the same values, and the loop re-reads them each tick (one
HGETALL), so a change made through any replica applies live. Scalars are stored as plain strings
(`minAvgMastery` and `maxBelow80` must stay plain numbers: the round-commit script reads them to
decide readiness); the fast-lane settings are the fields `fastLane.enabled`, `fastLane.weight`, …

Live values rule: while the fast lane is enabled, the loop runs with the fast lane's `intervalMs`,
`microBatchesPerTick` and `batchSize` (the original's "rush mode"); while it is disabled, with the
top-level ones, and fast-lane members are scheduled like everyone else (weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis

from shared.keys import Keys
from shared.logging import get_logger

log = get_logger(__name__)

FAST_LANE_PREFIX = "fastLane."


class FastLaneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    enabled: bool = True
    weight: int = Field(2, ge=1, le=10)
    intervalMs: int = Field(600, ge=50, le=60_000)
    microBatchesPerTick: int = Field(4, ge=1, le=64)
    batchSize: int = Field(4, ge=1, le=1000)


class CoachSettings(BaseModel):
    """The full, validated settings (the defaults of the original's coach-settings fallback)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    minAvgMastery: float = Field(75, ge=0, le=100)
    maxBelow80: int = Field(3, ge=0, le=1000)
    intervalMs: int = Field(600, ge=50, le=60_000)
    maxRoundsPerCycle: int = Field(4, ge=1, le=50)
    microBatchesPerTick: int = Field(4, ge=1, le=64)
    batchSize: int = Field(4, ge=1, le=1000)
    aggressiveMode: bool = True
    aggressiveThreshold: float = Field(50, ge=0, le=100)
    aggressiveMultiplier: float = Field(2, ge=1, le=10)
    hyperMode: bool = False
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


async def load(redis: Redis, keys: Keys) -> CoachSettings:
    loaded = from_fields(await redis.hgetall(keys.coach_settings))
    if loaded.invalid:
        log.warning("coach_settings_invalid_fields", fields=loaded.invalid)
    return loaded.settings


async def ensure_defaults(redis: Redis, keys: Keys) -> None:
    """Write every missing field with its default (HSETNX: never overwrites a value someone set),
    so the commit script and operators see explicit thresholds."""
    async with redis.pipeline(transaction=False) as pipe:
        for field, value in to_fields(CoachSettings()).items():
            pipe.hsetnx(keys.coach_settings, field, value)
        await pipe.execute()


def merge(current: CoachSettings, changes: dict[str, Any]) -> CoachSettings:
    """The settings after applying `changes` (already validated by a request model); the
    result is validated again as a whole."""
    data = current.model_dump()
    fast = changes.pop("fastLane", None) or {}
    data.update(changes)
    data["fastLane"].update(fast)
    return CoachSettings.model_validate(data)


async def save(redis: Redis, keys: Keys, current: CoachSettings, new: CoachSettings) -> list[str]:
    """Write the fields that changed (one HSET: the fields of one call land together). Fields
    are independent, so two replicas changing different settings do not lose each other's
    change. Returns the names of the changed fields."""
    old_fields, new_fields = to_fields(current), to_fields(new)
    changed = {k: v for k, v in new_fields.items() if old_fields.get(k) != v}
    if changed:
        await redis.hset(keys.coach_settings, mapping=changed)
    return sorted(changed)
