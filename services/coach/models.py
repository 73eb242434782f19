"""Request models of the coach API: strict types (no string→number coercion, no fractions for
counts, no NaN), bounds, unknown fields refused."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from services.coach.scheduler import PinChanges
from services.coach.settings_store import CoachSettings, FastLaneSettings, bounds
from shared.compat import ignored
from shared.validation import LearnerId, StrictModel

MAX_FAST_LANE_CHANGE = 1000  # learner ids per fast-lane call


class Empty(StrictModel):
    """No parameters (start, stop)."""


CompatText = Annotated[str, Field(max_length=64)]


class BoostRequest(StrictModel):
    rounds: int = Field(5, ge=1, le=20)
    batchSize: int = Field(3, ge=1, le=20)
    learner: LearnerId | None = None
    # Sent by the original fleet's clients (its boost read neither).
    target: CompatText | None = ignored(
        "a boost trains the learner named by `learner`; there is no other target"
    )
    intensity: CompatText | float | None = ignored("`rounds` and `batchSize` size a boost")


class HyperBoostRequest(StrictModel):
    rounds: int = Field(10, ge=1, le=50)
    batchSize: int = Field(6, ge=1, le=20)
    learner: LearnerId | None = None


class FastLaneLearners(StrictModel):
    """Pins: `add` pins learners into the fast lane, `exclude` pins them out of it (the automatic
    rule never takes them), `remove` drops a learner's pin either way (the automatic rule applies
    to it again). An id may appear in one list only."""

    add: list[LearnerId] = Field(default_factory=list, max_length=MAX_FAST_LANE_CHANGE)
    remove: list[LearnerId] = Field(default_factory=list, max_length=MAX_FAST_LANE_CHANGE)
    exclude: list[LearnerId] = Field(default_factory=list, max_length=MAX_FAST_LANE_CHANGE)

    @model_validator(mode="after")
    def _one_list_per_learner(self) -> FastLaneLearners:
        seen: dict[str, str] = {}
        for name in ("add", "remove", "exclude"):
            for learner in getattr(self, name):
                other = seen.setdefault(learner, name)
                if other != name:
                    raise ValueError(f"learner {learner!r} is in both {other} and {name}")
        return self


class FastLaneRequest(StrictModel):
    """A partial update: each setting named changes, every omitted one keeps its value (the
    original fleet reset an omitted `enable`, `weight` and `intervalMs` to their defaults).
    `learners` is a list of ids to pin into the fast lane, or `{add, remove, exclude}`."""

    enable: bool | None = None
    weight: int | None = Field(None, **bounds(FastLaneSettings, "weight"))
    intervalMs: int | None = Field(None, **bounds(FastLaneSettings, "intervalMs"))
    microBatchesPerTick: int | None = Field(None, **bounds(FastLaneSettings, "microBatchesPerTick"))
    batchSize: int | None = Field(None, **bounds(FastLaneSettings, "batchSize"))
    auto: bool | None = None
    autoMargin: float | None = Field(None, **bounds(FastLaneSettings, "autoMargin"))
    autoMax: int | None = Field(None, **bounds(FastLaneSettings, "autoMax"))
    windowS: int | None = Field(None, **bounds(FastLaneSettings, "windowS"))
    maxPinned: int | None = Field(None, **bounds(FastLaneSettings, "maxPinned"))
    learners: (
        Annotated[list[LearnerId], Field(max_length=MAX_FAST_LANE_CHANGE)] | FastLaneLearners | None
    ) = None

    def settings_changes(self) -> dict[str, object]:
        """The fast-lane settings this request names (`enable` is the setting `enabled`)."""
        fast = self.model_dump(exclude_none=True, exclude={"enable", "learners"})
        if self.enable is not None:
            fast["enabled"] = self.enable
        return fast

    def learner_changes(self) -> PinChanges:
        if self.learners is None:
            return PinChanges([], [], [])
        if isinstance(self.learners, FastLaneLearners):
            lane = self.learners
            return PinChanges(list(lane.add), list(lane.remove), list(lane.exclude))
        return PinChanges(list(dict.fromkeys(self.learners)), [], [])


class FastLaneSettingsUpdate(StrictModel):
    enabled: bool | None = None
    weight: int | None = Field(None, **bounds(FastLaneSettings, "weight"))
    intervalMs: int | None = Field(None, **bounds(FastLaneSettings, "intervalMs"))
    microBatchesPerTick: int | None = Field(None, **bounds(FastLaneSettings, "microBatchesPerTick"))
    batchSize: int | None = Field(None, **bounds(FastLaneSettings, "batchSize"))
    auto: bool | None = None
    autoMargin: float | None = Field(None, **bounds(FastLaneSettings, "autoMargin"))
    autoMax: int | None = Field(None, **bounds(FastLaneSettings, "autoMax"))
    windowS: int | None = Field(None, **bounds(FastLaneSettings, "windowS"))
    maxPinned: int | None = Field(None, **bounds(FastLaneSettings, "maxPinned"))


class SettingsUpdate(StrictModel):
    """A partial update of the coach settings; omitted fields keep their values."""

    minAvgMastery: float | None = Field(None, **bounds(CoachSettings, "minAvgMastery"))
    maxBelow80: int | None = Field(None, **bounds(CoachSettings, "maxBelow80"))
    intervalMs: int | None = Field(None, **bounds(CoachSettings, "intervalMs"))
    maxRoundsPerCycle: int | None = Field(None, **bounds(CoachSettings, "maxRoundsPerCycle"))
    microBatchesPerTick: int | None = Field(None, **bounds(CoachSettings, "microBatchesPerTick"))
    batchSize: int | None = Field(None, **bounds(CoachSettings, "batchSize"))
    aggressiveMode: bool | None = None
    aggressiveThreshold: float | None = Field(None, **bounds(CoachSettings, "aggressiveThreshold"))
    aggressiveMultiplier: float | None = Field(
        None, **bounds(CoachSettings, "aggressiveMultiplier")
    )
    hyperMode: bool | None = None
    coverageTarget: float | None = Field(None, **bounds(CoachSettings, "coverageTarget"))
    maxLearnersPerTick: int | None = Field(None, **bounds(CoachSettings, "maxLearnersPerTick"))
    fastLane: FastLaneSettingsUpdate | None = None
    # Kept in the original fleet's settings file, never read by its coach: nothing to apply here.
    autoBoostEnabled: bool | None = ignored("the coach has no automatic boost; boosts are calls")
    boostInterval: int | None = ignored(
        "the coach has no automatic boost; its pace is intervalMs", ge=-(10**9), le=10**9
    )
    targetMastery: float | None = ignored("readiness is minAvgMastery and maxBelow80", ge=0, le=100)

    def changes(self) -> dict[str, object]:
        data = self.model_dump(
            exclude_none=True, exclude={"autoBoostEnabled", "boostInterval", "targetMastery"}
        )
        if "fastLane" in data and not data["fastLane"]:
            del data["fastLane"]
        return data
